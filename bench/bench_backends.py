"""Whole programs side by side, each in its own process, interleaved round by round: tfx on each backend
(transformers, the fast GPT-2 path, ct2 fp32/int8, onnx fp32/int8) against the libraries' own programs
(SentenceTransformer.encode, the transformers pipelines, model.generate). Per row: the median wall time and
peak RSS over the kept rounds, and the 1-minute load average at each round; a round that started above
MAX_LOAD is discarded, not reported (a quiet machine is the only one whose ratios mean anything).

    python bench/bench_backends.py --hf-cache DIR [--rounds 5] [--lines 1000] [--out bench/RESULTS-backends.json]

The models are whatever DIR holds under the names below (the tiny test models' cache works for a smoke run:
tests/test_bench_smoke.py-style; the figures then say nothing about real models)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

MAX_LOAD = 1.5
EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CLASSIFY_MODEL = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
NER_MODEL = "dslim/bert-base-NER"
GPT2_MODEL = "openai-community/gpt2"

ST_ENCODE = """
import sys
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu", local_files_only=True)
lines = open(sys.argv[2]).read().splitlines()
v = m.encode(lines, batch_size=32)
print(len(v))
"""
PIPELINE = """
import sys
from transformers import pipeline
p = pipeline(sys.argv[3], model=sys.argv[1], device="cpu")
lines = open(sys.argv[2]).read().splitlines()
print(len(p(lines, batch_size=8)))
"""
GENERATE = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1]); model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
enc = tok(sys.argv[2], return_tensors="pt")
with torch.inference_mode():
    out = model.generate(**enc, max_new_tokens=int(sys.argv[3]), do_sample=False, pad_token_id=tok.eos_token_id)
print(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
"""


def programs(lines: str, new_tokens: int) -> dict[str, list[str]]:
    tfx = [sys.executable, "-m", "tfx"]
    prompt = "The history of the city begins"
    out = {}
    for name, task, model, extra in (("embed", "embed", EMBED_MODEL, ["--format", "jsonl"]), ("classify", "classify", CLASSIFY_MODEL, []), ("ner", "ner", NER_MODEL, [])):
        for backend, compute in (("transformers", "auto"), ("onnx", "float32"), ("onnx", "int8")):
            out[f"{name} tfx {backend} {compute}"] = [*tfx, task, "-m", model, "--backend", backend, "--compute-type", compute, "--input", lines, *extra]
    out["embed SentenceTransformer.encode"] = [sys.executable, "-c", ST_ENCODE, EMBED_MODEL, lines]
    out["classify pipeline"] = [sys.executable, "-c", PIPELINE, CLASSIFY_MODEL, lines, "text-classification"]
    out["ner pipeline"] = [sys.executable, "-c", PIPELINE, NER_MODEL, lines, "token-classification"]
    gen = [*tfx, "generate", "-m", GPT2_MODEL, "--max-new-tokens", str(new_tokens), "--greedy", prompt]
    out["generate model.generate"] = [sys.executable, "-c", GENERATE, GPT2_MODEL, prompt, str(new_tokens)]
    out["generate tfx fast"] = gen
    out["generate tfx transformers (TFX_FAST=0)"] = ["env", "TFX_FAST=0", *gen]
    out["generate tfx ct2 float32"] = [*gen, "--backend", "ct2", "--compute-type", "float32"]
    out["generate tfx ct2 int8"] = [*gen, "--backend", "ct2", "--compute-type", "int8"]
    return out


def run_once(argv: list[str], env: dict) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB of this child alone: os.wait4's rusage, exit status)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf-cache", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated row prefixes (embed, classify, ner, generate)")
    parser.add_argument("--out", default="bench/RESULTS-backends.json")
    parser.add_argument("--max-load", type=float, default=MAX_LOAD, help="a smoke run on a busy machine only; recorded in the results")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_CACHE": args.hf_cache, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    words = "the a cat dog runs quickly over under bright dark city river history model".split()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for i in range(args.lines):  # mixed lengths, 3-60 words
            f.write(" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + (i * 13) % 58)) + "\n")
    rows = programs(f.name, args.new_tokens)
    if args.only:
        rows = {k: v for k, v in rows.items() if k.split()[0] in args.only.split(",")}
    for argv in rows.values():  # warm-up: converts the onnx/ct2 copies once, outside the timing
        run_once(argv, env)
    samples: dict[str, list[dict]] = {k: [] for k in rows}
    discarded = 0
    for r in range(args.rounds):
        for name, argv in (list(rows.items()) if r % 2 == 0 else list(rows.items())[::-1]):  # interleaved
            load = os.getloadavg()[0]
            if load > args.max_load:
                discarded += 1
                continue
            wall, rss, code = run_once(argv, env)
            samples[name].append({"wall_s": wall, "peak_rss_mib": rss, "load": load, "code": code})
    table = {}
    for name, got in samples.items():
        ok = [s for s in got if s["code"] == 0]
        table[name] = {"kept": len(ok), "median_wall_s": statistics.median(s["wall_s"] for s in ok) if ok else None,
                       "median_peak_rss_mib": statistics.median(s["peak_rss_mib"] for s in ok) if ok else None,
                       "load": [round(s["load"], 2) for s in got], "failed": len(got) - len(ok)}  # fmt: skip
    result = {"max_load": args.max_load, "quiet": args.max_load <= MAX_LOAD, "discarded_runs": discarded, "rounds": args.rounds, "lines": args.lines, "rows": table}
    with open(args.out, "w") as out:
        json.dump(result, out, indent=1)
    for name, row in table.items():
        print(f"{name:45s} kept {row['kept']}  median {row['median_wall_s']} s  rss {row['median_peak_rss_mib']} MiB  load {row['load']}")
    print(f"discarded {discarded} runs above load {args.max_load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
