"""Long paragraphs through `tfx translate`: split into sentences and batched (the default) against whole
paragraphs (--no-split), side by side in one run (issue 14 #5).

    python bench/bench_long.py [--paragraphs 200] [--threads 2] [--hub-cache DIR] [--out FILE]

Two measurements, each mode run in this process through tfx's own pipeline (what the CLI runs; model
load excluded), the modes interleaved (split, whole, split, whole, ...), the median kept:

- speed: 200 paragraphs of 1-8 pseudo-English sentences (6-20 words) translated en->fr by a T5-small
  with random weights at the real size (bench/models.py; 60M parameters, 32k vocabulary), greedy. Random
  weights never choose </s>, so each input runs to tfx's derived output budget (2 x its tokens + 16):
  the same rule for both modes. Words/s = source words / compute seconds.
- coverage: the same shape of paragraphs made of the sentences the tiny Marian en-de test model memorised
  (tests/tiny_models.py), so a sentence's translation is known: coverage = source sentences whose
  memorised translation appears in the output. A random-weight model cannot show coverage.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


# t5-small's own translation settings (beam search of 4, max_length 300): with random weights, which never
# choose </s>, every input would run to 300 tokens. The bench decodes greedily with tfx's derived budget
# instead (2 x the input's tokens + 16, what tfx uses for a model without length settings).
_MODEL_DECODING = ("max_length", "min_length", "num_beams", "early_stopping", "length_penalty", "no_repeat_ngram_size")


def paragraphs(sentences: list[str], n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(sentences) for _ in range(rng.randint(1, 8))] for _ in range(n)]


def timed(runner, texts: list[str]) -> tuple[float, list[str]]:
    from tfx import io as tio, pipeline

    out = io.StringIO()
    t0 = time.perf_counter()
    pipeline.run(tio.read_records(texts, None, "text"), runner, tio.Writer("text", out=out), quiet=True)
    return time.perf_counter() - t0, out.getvalue().splitlines()


def coverage(paras: list[list[str]], outputs: list[str], translation: dict[str, str]) -> tuple[int, int]:
    found = total = 0
    for para, out in zip(paras, outputs):
        total += len(para)
        for target in set(translation[s] for s in para):
            found += min(out.count(target), sum(translation[s] == target for s in para))
    return found, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paragraphs", type=int, default=200)
    ap.add_argument("--speed-paragraphs", type=int, help="paragraphs for the T5-small-size speed runs (default: --paragraphs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--hub-cache", type=Path, default=HERE / ".cache" / "hub")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_CACHE"] = str(args.hub_cache)  # read once, when huggingface_hub is imported
    import torch

    torch.set_num_threads(args.threads)
    import models
    import tiny_models as tm

    models.build(args.hub_cache, roles=("t5",), log=lambda m: print(m, file=sys.stderr))
    if not (args.hub_cache / tm.repo_folder_name("tfx-test/tiny-marian-en-de")).exists():
        tm.build_all(args.hub_cache, ["marian"])  # the tiny test model, into the same cache (3 s)
    from tfx import spec
    from tfx.tasks import open_task

    def opened(model: str, **settings):
        return open_task(spec.build("translate", spec.TranslateSettings(**settings), model=model, device="cpu", quiet=True))

    words = models.vocabulary()
    speed_paras = paragraphs(models.sentences(600, seed=21, lengths=(6, 20), words=words), args.speed_paragraphs or args.paragraphs, seed=22)
    speed_texts = [" ".join(p) for p in speed_paras]
    n_words = sum(len(t.split()) for t in speed_texts)
    n_sent = sum(len(p) for p in speed_paras)
    t5 = {mode: opened("google-t5/t5-small", tgt="fr", split=mode == "split") for mode in ("split", "whole")}
    for task in t5.values():  # greedy, each input's budget derived from it (see the docstring)
        task.kwargs = {k: v for k, v in task.kwargs.items() if k not in _MODEL_DECODING}
        task.derive_length = True
    secs: dict[str, list[float]] = {"split": [], "whole": []}
    for rep in range(args.reps):
        for mode in ("split", "whole") if rep % 2 == 0 else ("whole", "split"):
            s, _ = timed(t5[mode], speed_texts)
            secs[mode].append(s)
            print(f"t5-small {mode}: {s:.1f} s", file=sys.stderr)

    pairs = dict(tm.MARIAN_TRANSLATIONS)
    cov_paras = paragraphs(list(pairs), args.paragraphs, seed=23)
    cov_texts = [" ".join(p) for p in cov_paras]
    marian = {mode: opened("tfx-test/tiny-marian-en-de", tgt="de", split=mode == "split") for mode in ("split", "whole")}
    cov, tiny_secs = {}, {}
    for mode in ("split", "whole"):
        tiny_secs[mode], outs = timed(marian[mode], cov_texts)
        cov[mode] = coverage(cov_paras, outs, pairs)

    med = {m: statistics.median(v) for m, v in secs.items()}
    w = []
    w.append(f"## translate: long paragraphs, split into sentences vs whole (bench/bench_long.py, {time.strftime('%Y-%m-%d %H:%M')})\n")
    load = os.getloadavg()[0]
    w.append(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, load average {load:.2f} at the end;"
             f" torch {torch.__version__}. Speed: {len(speed_paras)} paragraphs of 1-8 sentences ({n_sent} sentences, {n_words:,} words),"
             f" median of {args.reps} interleaved runs; coverage: {args.paragraphs} paragraphs ({sum(len(p) for p in cov_paras)} sentences); model load excluded.\n")  # fmt: skip
    w.append("| model | mode | compute (s), median [runs] | source words/s | vs whole | coverage (sentences with their translation) |")
    w.append("|---|---|---|---|---|---|")
    for mode, label in (("split", "split + batched by length (default)"), ("whole", "whole paragraphs (`--no-split`)")):
        runs = ", ".join(f"{s:.1f}" for s in secs[mode])
        w.append(f"| T5-small size, random weights | {label} | {med[mode]:.1f} [{runs}] | {n_words / med[mode]:,.0f} | {med['whole'] / med[mode]:.2f}x | — (random weights) |")
    for mode, label in (("split", "split + batched by length (default)"), ("whole", "whole paragraphs (`--no-split`)")):
        found, total = cov[mode]
        w.append(f"| tiny Marian en-de (memorised sentences) | {label} | {tiny_secs[mode]:.1f} | {sum(len(t.split()) for t in cov_texts) / tiny_secs[mode]:,.0f} | {tiny_secs['whole'] / tiny_secs[mode]:.2f}x | {found}/{total} ({100 * found / total:.1f} %) |")
    text = "\n".join(w) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
