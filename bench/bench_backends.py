"""Whole programs side by side, each in its own process, interleaved round by round: tfx on each backend
(transformers, the fast GPT-2 path, ct2 fp32/int8, onnx fp32/int8) against the libraries' own programs
(SentenceTransformer.encode, the transformers pipelines, model.generate). Per row: the median wall time and
peak RSS over the kept rounds, and per round the 1-minute load average and the cores other processes took
while it ran. A run starts only once the machine is idle (measured from /proc/stat) and is discarded, not
reported, if other processes took more than MAX_FOREIGN cores during it: a quiet machine is the only one whose
ratios mean anything.

    python bench/bench_backends.py --hf-cache DIR --build [--rounds 5] [--lines 1000] [--out bench/RESULTS-backends.json]

The models are whatever DIR holds under the names below; `--build` first puts random-weight models at the real
sizes there (GPT-2 small from bench/models.py, BERT-base classify and NER heads from bench/bench_encoders.py,
a MiniLM-L6-sized sentence-transformers model from bench/bench_embed.py) where they are missing. The tiny test
models' cache works for a smoke run (with their names passed in TFX_BENCH_* variables); the figures then say
nothing about real models.

`--fastembed-python PY` adds fastembed's row: PY is a Python with fastembed installed (its own venv: fastembed
pins a different huggingface_hub), run on tfx's own ONNX export of the embed model (the same graph, so the
same vectors), mean pooling and normalisation as the sentence-transformers model declares."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

MAX_FOREIGN = 0.25  # a run starts only once at most this many cores are busy (waiting up to 90 s for it), and is
# discarded if other processes took more than this many cores on average while it ran
EMBED_MODEL = os.environ.get("TFX_BENCH_EMBED", "bench/minilm-l6")
CLASSIFY_MODEL = os.environ.get("TFX_BENCH_CLASSIFY", "bench/bert-base-sst2")
NER_MODEL = os.environ.get("TFX_BENCH_NER", "bench/bert-base-ner")
GPT2_MODEL = os.environ.get("TFX_BENCH_GPT2", "openai-community/gpt2")
FASTEMBED = """
import sys
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
# tfx's export ends in the model's own pooling (its first output is the pooled vector): fastembed normalises it
TextEmbedding.add_custom_model(model="tfx-bench/embed", pooling=PoolingType.DISABLED, normalization=True,
                               sources=ModelSource(hf="tfx-bench/embed"), dim=int(sys.argv[3]), model_file="model.onnx")
m = TextEmbedding("tfx-bench/embed", specific_model_path=sys.argv[1], threads=2)
lines = open(sys.argv[2]).read().splitlines()
print(len(list(m.embed(lines, batch_size=32))))
"""


def build(cache: Path) -> None:
    """The four models at the real sizes, into `cache`, where missing."""
    import bench_embed
    import bench_encoders
    import models
    import tiny_models as tm

    models.build(cache, ("gpt2",))
    texts = bench_encoders.sentences(2000)
    bench_encoders.build(cache, texts)
    if not (cache / tm.repo_folder_name(EMBED_MODEL) / "refs" / "main").exists():
        with tempfile.TemporaryDirectory() as tmp:
            bench_embed.build_model(Path(tmp), texts)
            snapshot = tm.install_into_cache(Path(tmp) / "model", cache, EMBED_MODEL)  # top-level files
            for sub in (Path(tmp) / "model").iterdir():  # 1_Pooling/, 2_Normalize/: plain copies
                if sub.is_dir():
                    shutil.copytree(sub, snapshot / sub.name, dirs_exist_ok=True)

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


def fastembed_folder(cache: Path) -> Path:
    """A folder as fastembed's specific_model_path wants it: tfx's float32 export of the embed model (made by
    the warm-up), with the snapshot's config and tokenizer_config beside it."""
    from huggingface_hub import constants

    repo = EMBED_MODEL.replace("/", "--")
    (export,) = [p for p in (Path(constants.HF_HOME) / "onnx").glob(f"{repo}--*--embed--float32")]
    (snapshot,) = (cache / f"models--{repo}" / "snapshots").iterdir()
    folder = Path(tempfile.mkdtemp(prefix="tfx-bench-fastembed-"))
    for source in (export / "model.onnx", export / "tokenizer.json", snapshot / "config.json", snapshot / "tokenizer_config.json"):
        (folder / source.name).symlink_to(source.resolve())
    return folder


def machine() -> dict:
    import platform

    versions = {}
    for name in ("torch", "transformers", "onnxruntime", "ctranslate2", "sentence_transformers", "tokenizers"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tfx_commit": commit, **versions}  # fmt: skip


def busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat; 0 where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def busy_cores(window: float = 2.0) -> float:
    """Cores busy on average over the next `window` seconds, read from /proc/stat."""
    before = busy_seconds()
    time.sleep(window)
    return (busy_seconds() - before) / window


def wait_quiet(patience: float) -> tuple[float, float]:
    """(1-minute load average, busy cores over 2 s) once the machine is idle (at most MAX_FOREIGN cores busy),
    or the last values read after `patience` seconds. The load average alone is no test here: on this VM
    an idle machine (0.04 cores busy) read 1.59, so idleness is measured, and the load is recorded."""
    deadline = time.monotonic() + patience
    busy = busy_cores()
    while busy > MAX_FOREIGN and time.monotonic() < deadline:
        busy = busy_cores()
    return os.getloadavg()[0], busy


def run_once(argv: list[str], env: dict) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MiB of this child alone: os.wait4's rusage, exit status, foreign cores: the CPU
    that other processes took during the run, in cores on average)."""
    busy = busy_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    foreign = max(0.0, (busy_seconds() - busy - usage.ru_utime - usage.ru_stime) / wall)
    return wall, usage.ru_maxrss / 1024, proc.returncode, foreign


def main() -> int:
    global MAX_FOREIGN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf-cache", required=True)
    parser.add_argument("--build", action="store_true", help="first build the real-size random-weight models into --hf-cache where missing")
    parser.add_argument("--fastembed-python", default="", help="a Python with fastembed installed: adds fastembed's embed row")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated row prefixes (embed, classify, ner, generate)")
    parser.add_argument("--out", default="bench/RESULTS-backends.json")
    parser.add_argument("--max-foreign", type=float, default=MAX_FOREIGN, help="raise only for a smoke run on a busy machine; recorded in the results")
    args = parser.parse_args()
    MAX_FOREIGN = args.max_foreign
    if args.build:
        build(Path(args.hf_cache))
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
    if args.fastembed_python and (not args.only or "embed" in args.only.split(",")):
        folder = fastembed_folder(Path(args.hf_cache))
        rows["embed fastembed"] = [args.fastembed_python, "-c", FASTEMBED, str(folder), f.name, "384"]
        run_once(rows["embed fastembed"], env)
    samples: dict[str, list[dict]] = {k: [] for k in rows}
    discarded = 0
    for r in range(args.rounds):
        for name, argv in (list(rows.items()) if r % 2 == 0 else list(rows.items())[::-1]):  # interleaved
            load, idle_busy = wait_quiet(patience=90)
            if idle_busy > MAX_FOREIGN:
                discarded += 1
                continue
            wall, rss, code, foreign = run_once(argv, env)
            if foreign > MAX_FOREIGN:  # another process took CPU during the run: not a quiet run
                discarded += 1
                continue
            samples[name].append({"wall_s": wall, "peak_rss_mib": rss, "load": load, "foreign_cores": round(foreign, 3), "code": code})
    table = {}
    for name, got in samples.items():
        ok = [s for s in got if s["code"] == 0]
        table[name] = {"kept": len(ok), "median_wall_s": statistics.median(s["wall_s"] for s in ok) if ok else None,
                       "median_peak_rss_mib": statistics.median(s["peak_rss_mib"] for s in ok) if ok else None,
                       "load": [round(s["load"], 2) for s in got], "foreign_cores": [s["foreign_cores"] for s in got],
                       "failed": len(got) - len(ok)}  # fmt: skip
    result = {"machine": machine(), "max_foreign_cores": MAX_FOREIGN, "quiet": MAX_FOREIGN <= 0.25, "discarded_runs": discarded, "rounds": args.rounds, "lines": args.lines, "rows": table}
    with open(args.out, "w") as out:
        json.dump(result, out, indent=1)
    for name, row in table.items():
        print(f"{name:45s} kept {row['kept']}  median {row['median_wall_s']} s  rss {row['median_peak_rss_mib']} MiB  load {row['load']}")
    print(f"discarded {discarded} runs: more than {MAX_FOREIGN} cores busy before or during them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
