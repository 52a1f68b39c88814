"""--engine ray against the local engine: the same fill-mask records through both, timed, compared.

Runs `tfx fill-mask` on N masked sentences (default 10,000) twice, as a user would: once with the local
engine (one process, torch on every core) and once with `--engine ray` on a local Ray cluster that tfx
starts itself (one single-threaded replica per CPU). The model is BERT-base at its real size with random
weights and a WordPiece vocabulary of 30,522 (bench/models.py; no network), or the tests' tiny BERT with
--tiny. Prints a markdown table for bench/RESULTS.md and says whether the records are the same.

    python bench/bench_ray.py             # 10,000 records on BERT-base (a few minutes on 2 cores)
    python bench/bench_ray.py --tiny      # the machinery in under a minute
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models
sys.path.insert(0, str(HERE))  # models

FINAL_LINE = re.compile(r"tfx: (\d+)/(\d+) records, (\d+) replica\(s\), ([\d.]+)s")


def masked_sentences(n: int, seed: int = 5) -> list[str]:
    """n sentences with one word masked each, at a random position (deterministic)."""
    import models

    rng = random.Random(seed)
    out = []
    for sentence in models.sentences(n, seed=seed):
        words = sentence.split(" ")
        i = rng.randrange(len(words))
        tail = words[i][len(words[i].rstrip(",.?!")) :]  # keep the punctuation the word carried
        words[i] = "[MASK]" + tail
        out.append(" ".join(words))
    return out


def tiny_sentences(n: int) -> list[str]:
    import tiny_models as tm

    cases = [c for c, _ in tm.FILL_MASK_CASES]
    return [cases[i % len(cases)] for i in range(n)]


def child_env(cache: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RAY_", "OMP_", "MKL_")) and k != "TFX_SERVER"}
    env.update({
        "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    })  # fmt: skip
    return env


def timed(cmd: list[str], env: dict[str, str], stdout=None) -> tuple[float, str, str]:
    """Wall time, stderr, and the 1-minute load average before -> after (the machine may be shared)."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return wall, proc.stderr, f"{load:.1f} -> {os.getloadavg()[0]:.1f}"


def compare(local_lines: list[str], ray_lines: list[str]) -> str:
    if local_lines == ray_lines:
        return f"yes: {len(ray_lines):,} of {len(local_lines):,} JSON lines identical, in the same order"
    same = sum(a == b for a, b in zip(local_lines, ray_lines))
    words = sum(json.loads(a)["output"] == json.loads(b)["output"] for a, b in zip(local_lines, ray_lines))
    return f"**no**: {same:,} identical lines, {words:,} identical fills, of {len(local_lines):,} local / {len(ray_lines):,} ray"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny BERT instead of BERT-base")
    ap.add_argument("--replicas", type=int, default=None, help="default: one per CPU of the local cluster")
    args = ap.parse_args(argv)
    log = lambda msg: print(f"[bench_ray] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    if args.tiny:
        import tiny_models

        cache, model = HERE / ".cache" / "smoke-hub", "tfx-test/tiny-bert"
        if not (cache / "models--tfx-test--tiny-bert").exists():
            tiny_models.build_all(cache, ["bert"])
        texts = tiny_sentences(args.records)
    else:
        import models

        cache, model = models.build(HERE / ".cache" / "hub", roles=("bert",), log=log), "bert-base-uncased"
        texts = masked_sentences(args.records)

    with tempfile.TemporaryDirectory(prefix="tfx-bench-ray-") as tmp:
        tmp = Path(tmp)
        env = child_env(cache, tmp / "hf-home")
        src = tmp / "in.txt"
        src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        tfx = [sys.executable, "-m", "tfx", "fill-mask", "-m", model, "--input", str(src)]

        log(f"local engine, {len(texts):,} records ...")
        with open(tmp / "local.jsonl", "w", encoding="utf-8") as out:
            local_s, _, local_load = timed([*tfx, "--format", "jsonl", "-q"], env, stdout=out)
        log(f"local: {local_s:.1f} s; --engine ray ...")
        replicas = ["--replicas", str(args.replicas)] if args.replicas else []
        ray_s, err, ray_load = timed([*tfx, "--engine", "ray", "--output", str(tmp / "out"), *replicas], env)
        final = FINAL_LINE.search(err.strip().splitlines()[-1])
        if final is None:
            sys.exit(f"no final progress line from --engine ray:\n{err}")
        n_replicas, pipeline_s = int(final.group(3)), float(final.group(4))
        log(f"ray: {ray_s:.1f} s")

        local_lines = (tmp / "local.jsonl").read_text(encoding="utf-8").splitlines()
        shards = sorted((tmp / "out").glob("part-*.jsonl"))
        ray_lines = [line for p in shards for line in p.read_text(encoding="utf-8").splitlines()]
        same = compare(local_lines, ray_lines)

    import ray
    import torch

    n = len(texts)
    print(f"### --engine ray vs local: {n:,} fill-mask records, {model}\n")
    print(f"`python bench/bench_ray.py{' --tiny' if args.tiny else ''}` on {datetime.date.today()}: {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), torch {torch.__version__}, ray {ray.__version__}. Wall "
          "times of the whole command, model loading and (for ray) starting the local cluster included. The load "
          "average (1 min) before -> after each run says how busy the machine was with other work.\n")  # fmt: skip
    print("| engine | how | wall time | records/s | load |")
    print("|---|---|---|---|---|")
    print(f"| local | 1 process, torch on {torch.get_num_threads()} threads | {local_s:.1f} s | {n / local_s:,.1f} | {local_load} |")
    print(f"| ray | local cluster, {n_replicas} replicas x 1 CPU, {len(shards)} shards | {ray_s:.1f} s | {n / ray_s:,.1f} | {ray_load} |")
    print(f"| ray, pipeline only | replicas loading the model, reading, computing, writing (cluster start and input scan excluded) | {pipeline_s:.1f} s | {n / pipeline_s:,.1f} | |")
    print(f"\nSame records: {same}.")
    return 0 if ray_lines == local_lines else 1


if __name__ == "__main__":
    sys.exit(main())
