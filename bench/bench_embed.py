"""embed vs SentenceTransformer.encode, side by side in one process, at equal batch size.

The model is MiniLM-sized (BERT: 6 layers, hidden 384, 12 heads, intermediate 1536, 30522 words, 512
positions, as sentence-transformers/all-MiniLM-L6-v2), randomly initialised from its config (no pretrained
weights here) and saved in sentence-transformers' layout (Transformer + mean Pooling + Normalize). The
input is N sentences of mixed length (3 to 120 words, seeded). Each side runs `--reps` times, alternating,
after one warm-up each; the table gives the median compute seconds (model loaded, input in memory, the
vectors out) as CPU time of the process (time.process_time: with torch pinned to one thread it is the work
done, and it stays meaningful on a machine other jobs share) and as wall time, and the check that both
give the same vectors (within 1e-5).

    python bench/bench_embed.py [--sentences 1000] [--batch-size 32] [--threads 1] [--reps 3]

tfx's side is the CLI's path short of printing: spec -> tasks.open_task (the one load sequence) ->
pipeline.run (reader, checks, windows sorted by token count, batches, results in input order, the writer);
encode sorts the whole input by character count itself."""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def sentences(n: int, seed: int = 7) -> list[str]:
    import tiny_models as tm

    words = " ".join(tm._generic_lines()).replace(",", "").replace(".", "").split()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = min(120, max(3, int(rng.lognormvariate(3.0, 0.8))))  # mostly short, a long tail
        out.append(" ".join(rng.choice(words) for _ in range(length)).capitalize() + ".")
    return out


def build_model(out: Path, texts: list[str]) -> None:
    import tiny_models as tm
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizer

    base = out / "base"
    tok = BertTokenizer(vocab=tm._wordpiece_vocab(texts, 30522), do_lower_case=True, model_max_length=512)
    tok.save_pretrained(base)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512)
    BertModel(config).save_pretrained(base)
    transformer = Transformer(str(base), max_seq_length=256)
    model = SentenceTransformer(modules=[transformer, Pooling(384, "mean"), Normalize()], device="cpu")
    model.save(str(out / "model"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    texts = sentences(args.sentences)
    with tempfile.TemporaryDirectory(prefix="tfx-bench-embed-") as tmp:
        build_model(Path(tmp), texts)
        path = str(Path(tmp) / "model")
        from sentence_transformers import SentenceTransformer

        from tfx import io, pipeline, spec
        from tfx.tasks import open_task

        st = SentenceTransformer(path, device="cpu")
        runner = open_task(spec.build("embed", spec.EmbedSettings(), model=path, device="cpu", dtype="float32"))

        def run_st():
            return st.encode(texts, batch_size=args.batch_size, show_progress_bar=False)

        class Collect(io.Writer):  # the vectors, in input order, as the CLI's writer would get them
            def write(self, record, result, error=None, flush=True):
                self.rows.append(result.embedding)

        def run_tfx():
            writer = Collect("jsonl")
            writer.rows = []
            pipeline.run(io.read_records(texts, None, "text"), runner, writer, batch_size=args.batch_size)
            return np.stack(writer.rows)

        times: dict[str, list[float]] = {"encode": [], "tfx": []}
        walls: dict[str, list[float]] = {"encode": [], "tfx": []}
        outputs = {}
        for name, fn in (("encode", run_st), ("tfx", run_tfx)):
            outputs[name] = fn()  # warm-up
        for _ in range(args.reps):
            for name, fn in (("encode", run_st), ("tfx", run_tfx)):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times[name].append(time.process_time() - c0)
                walls[name].append(time.perf_counter() - t0)
        same = bool(np.allclose(outputs["encode"], outputs["tfx"], atol=1e-5))
        med = {k: statistics.median(v) for k, v in times.items()}
        wall = {k: statistics.median(v) for k, v in walls.items()}
        row = {
            "sentences": len(texts), "batch_size": args.batch_size, "threads": args.threads, "reps": args.reps,
            "encode_s": round(med["encode"], 3), "tfx_s": round(med["tfx"], 3), "ratio": round(med["encode"] / med["tfx"], 3),
            "encode_wall_s": round(wall["encode"], 3), "tfx_wall_s": round(wall["tfx"], 3), "wall_ratio": round(wall["encode"] / wall["tfx"], 3),
            "encode_runs": [round(t, 3) for t in times["encode"]], "tfx_runs": [round(t, 3) for t in times["tfx"]],
            "same_vectors": same, "load_avg": os.getloadavg()[0],
        }  # fmt: skip
    print(json.dumps(row))
    print(f"| embed, {row['sentences']} sentences of mixed length, batch {row['batch_size']}, {row['threads']} threads "
          f"| {row['encode_s']:.2f} s | {row['tfx_s']:.2f} s | {row['ratio']:.2f}x | {row['wall_ratio']:.2f}x | {'yes' if same else 'NO'} |", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
