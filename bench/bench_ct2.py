"""The CTranslate2 backend against tfx's transformers path and its fast GPT-2 path, whole programs side by side:

    python bench/bench_ct2.py                       # the full run (~15 minutes on 2 cores); writes bench/RESULTS.md's section
    python bench/bench_ct2.py --smoke --hub-cache DIR --out /tmp/ct2.md   # tiny models, for CI

Every program is one `tfx ...` process (tfx.cli.main, started through a probe that also notes when the model
was loaded and when the records were done, so compute reads apart from start-up), run to the end: whole-program
wall seconds, peak RSS of that process alone (os.wait4 on its pid), its outputs (jsonl) and its own report of
whether torch / transformers were imported. The programs of a scenario run interleaved within each rep (the
order rotating by rep), so the shared machine's load hits all of them alike; medians over the reps. Every program
gets the same threads: this process's CPU affinity (CTranslate2's intra_threads is the affinity's size) and
OMP/MKL_NUM_THREADS (torch). Conversion (`tfx pull --engine ct2`, first use) is timed on its own, before the runs.

The models: bench/models_ct2.py (random weights at the real sizes; the measured copies force exactly N new tokens)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402 - Runner, child_env, machine, versions, med
import models_ct2  # noqa: E402

PY = sys.executable
TFX = [PY, "-m", "tfx"]
START, END = "<!-- bench_ct2: begin -->", "<!-- bench_ct2: end -->"
# The probe: tfx's CLI in this process, timing open_task (load, conversion included) and the pipeline (compute).
PROBE = r"""
import json, os, sys, time
T0 = time.perf_counter()
import tfx.engines.local as local, tfx.pipeline as pipeline
marks = {}
real_open, real_run = local.open_task, pipeline.run_spec
def open_task(spec):
    marks["open"] = time.perf_counter()
    return real_open(spec)
def run_spec(spec, work):
    marks["loaded"] = time.perf_counter()
    try:
        return real_run(spec, work)
    finally:
        marks["done"] = time.perf_counter()
        heavy = [m for m in ("torch", "transformers") if m in sys.modules]
        fast = getattr(work, "fast", None) is not None
        sys.stderr.write("TFXBENCH=" + json.dumps({"start_s": marks["open"] - T0, "load_s": marks["loaded"] - marks["open"],
                         "compute_s": marks["done"] - marks["loaded"], "heavy": heavy, "fast": fast}) + "\n")
        sys.stderr.flush()
local.open_task, pipeline.run_spec = open_task, run_spec
sys.argv = ["tfx"] + sys.argv[1:]
from tfx.cli import main
main()
"""

FULL = {
    "gpt2": "openai-community/gpt2", "t5": "google-t5/t5-small", "marian": models_ct2.MARIAN,
    "decode_tokens": 64, "prompts": 32, "prompt_tokens": 32, "sentences": 200, "translate_tokens": 24,
    "scenarios": ("decode1", "gen32", "t5", "marian"),
}  # fmt: skip
SMOKE = {
    "gpt2": "tfx-test/tiny-gpt2", "t5": "tfx-test/tiny-t5", "marian": "tfx-test/tiny-marian-en-de",
    "decode_tokens": 6, "prompts": 4, "prompt_tokens": 6, "sentences": 5, "translate_tokens": 6,
    "scenarios": ("decode1", "marian"),  # one decoder-only, one encoder-decoder: every kind of program, few processes
}  # fmt: skip
PROGRAMS = {  # name -> (label, extra CLI arguments, TFX_FAST, runs the forced copy)
    "transformers": ("tfx, transformers (`--engine local`, `TFX_FAST=0`)", ["--engine", "local"], "0", True),
    "fast": ("tfx, fast GPT-2 path (`--engine local`)", ["--engine", "local"], "1", False),
    "ct2_fp32": ("tfx, ct2 float32 (`--engine ct2 --compute-type float32`)", ["--engine", "ct2", "--compute-type", "float32"], "1", True),
    "ct2_int8": ("tfx, ct2 int8 (`--engine ct2`, int8 on CPU)", ["--engine", "ct2", "--compute-type", "int8"], "1", True),
}


def scenarios(cfg: dict, cache: Path) -> list[dict]:
    """Each: what is run, on which model copies, with which input; the forced copies are made here."""
    import models as text_models

    g, t, m = (models_ct2.snapshot(cache, cfg[k]) for k in ("gpt2", "t5", "marian"))
    words = text_models.vocabulary()
    prompts = [p.rstrip(".?!") for p in text_models.sentences(cfg["prompts"], seed=5, lengths=(4, 16), words=words)]
    sentences = text_models.sentences(cfg["sentences"], seed=8, lengths=(6, 20), words=words)
    n1, n2, nt = cfg["decode_tokens"], cfg["prompt_tokens"], cfg["translate_tokens"]
    forced = lambda src, name, n: models_ct2.forced(cache, src, f"tfx-bench/{name}-min{n}", n)  # noqa: E731
    gen = ["generate", "--greedy", "-q", "-f", "jsonl"]
    tr = ["translate", "--from", "en", "--to", "de", "--num-beams", "1", "-q", "-f", "jsonl"]
    gen_programs, tr_programs = ["transformers", "fast", "ct2_fp32", "ct2_int8"], ["transformers", "ct2_fp32", "ct2_int8"]
    make = {
        "decode1": lambda: {"title": f"GPT-2 small, batch 1: one prompt, {n1} new tokens", "unit": "tokens", "per": n1,
                            "cmd": [*gen, "--max-new-tokens", str(n1)], "plain": cfg["gpt2"], "model": forced(g, "gpt2", n1),
                            "inputs": prompts[:1], "programs": gen_programs},
        "gen32": lambda: {"title": f"GPT-2 small, {len(prompts)} prompts x {n2} new tokens", "unit": "tokens", "per": n2,
                          "cmd": [*gen, "--max-new-tokens", str(n2)], "plain": cfg["gpt2"], "model": forced(g, "gpt2", n2),
                          "inputs": prompts, "programs": gen_programs},
        "t5": lambda: {"title": f"T5-small, translate {len(sentences)} sentences en→de, {nt} new tokens each", "unit": "sentences",
                       "per": 1, "cmd": [*tr, "--max-new-tokens", str(nt)], "model": forced(t, "t5-small", nt), "inputs": sentences,
                       "programs": tr_programs},
        "marian": lambda: {"title": f"Marian at opus-mt-en-de's size, translate {len(sentences)} sentences en→de, {nt} new tokens each",
                           "unit": "sentences", "per": 1, "cmd": [*tr, "--max-new-tokens", str(nt)], "model": forced(m, "opus-mt-en-de", nt),
                           "inputs": sentences, "programs": tr_programs},
    }  # fmt: skip
    return [{"key": key, **make[key]()} for key in cfg["scenarios"]]


# ---- running --------------------------------------------------------------------------------------------


def run_program(runner: bench.Runner, sc: dict, name: str) -> dict:
    _label, extra, fast, forced = PROGRAMS[name]
    model = sc["model"] if forced else sc["plain"]
    cmd = [PY, "-c", PROBE, *sc["cmd"], "-m", model, *extra]
    r = runner.run(cmd, stdin="\n".join(sc["inputs"]) + "\n", env={**runner.env, "TFX_FAST": fast})
    line = next((x for x in r["err"].splitlines() if x.startswith("TFXBENCH=")), None)
    if line is None:
        raise RuntimeError(f"{name} on {model}: no timing report on stderr:\n{r['err'][-2000:]}")
    rows = [json.loads(x) for x in r["out"].splitlines() if x.strip()]
    return {**json.loads(line[9:]), "wall_s": r["wall_s"], "rss_mb": r["rss_mb"], "outputs": [x.get("output") for x in rows],
            "tokens": [x.get("generated_tokens") for x in rows]}  # fmt: skip


def convert_all(runner: bench.Runner, scs: list[dict], log) -> dict:
    """First use: each forced copy converted once per compute type, timed (`tfx pull --engine ct2`)."""
    out = {}
    for model in dict.fromkeys(sc["model"] for sc in scs):
        for ctype in ("float32", "int8"):
            log(f"converting {model} ({ctype})")
            r = runner.run([*TFX, "pull", model, "--engine", "ct2", "--compute-type", ctype, "-q"])
            out[f"{model} {ctype}"] = {"wall_s": r["wall_s"], "rss_mb": r["rss_mb"]}
    return out


def measure(runner: bench.Runner, scs: list[dict], reps: int, log, save) -> dict:
    """Every rep runs every program of every scenario once; save(R, reps_done) after each rep (a partial run
    can be rendered with --from-json)."""
    R: dict = {sc["key"]: {p: [] for p in sc["programs"]} for sc in scs}
    R["load"] = []
    for rep in range(reps):
        if rep:
            save(R, rep)
        R["load"].append(os.getloadavg()[0])
        for sc in scs:
            order = sc["programs"][rep % len(sc["programs"]) :] + sc["programs"][: rep % len(sc["programs"])]
            log(f"rep {rep + 1}/{reps}: {sc['key']} ({', '.join(order)})")
            for name in order:
                R[sc["key"]][name].append(run_program(runner, sc, name))
    R["load"].append(os.getloadavg()[0])
    return R


# ---- the report -----------------------------------------------------------------------------------------


def same(a: list, b: list) -> str:
    return f"{sum(x == y for x, y in zip(a, b))}/{len(b)}"


def paired(runs: dict, base: str, name: str, metric: str) -> float:
    """Median over reps of base/name, each rep's two programs having run back to back."""
    return bench.med([b[metric] / x[metric] for b, x in zip(runs[base], runs[name])])


def section(R: dict, scs: list[dict], conv: dict, meta: dict) -> tuple[str, dict]:
    lines: list[str] = []
    w = lines.append
    mc = meta["machine"]
    w(f"Written by `{meta['command']}` on {meta['date']} in {meta['minutes']:.1f} minutes. Models: random weights at the real sizes"
      f" (bench/models_ct2.py), each measured copy forcing exactly N new tokens (min_new_tokens = max_new_tokens = N). Every program is"
      f" one `tfx` process, {meta['reps']} reps interleaved (order rotating), medians; ratios are medians of per-rep ratios.\n")  # fmt: skip
    w(f"- Machine: {mc['cpu']}, `nproc` {meta['nproc']}, RAM {mc.get('ram_gb', '?')} GB; threads: {meta['threads']} for every program"
      f" (CPU affinity → CTranslate2 intra_threads; OMP/MKL_NUM_THREADS → torch). Load average (1 min) at each rep's start and at the end:"
      f" {', '.join(f'{x:.2f}' for x in R['load'])} — the machine is shared.")  # fmt: skip
    v = meta["versions"]
    w("- Versions: " + ", ".join(f"{k} {v[k]}" for k in v) + f". Marian-size vocabulary: {meta['marian_vocab']} entries"
      " (two sentencepiece models of 32,000 pieces trained here; opus-mt-en-de has 58,101).\n")  # fmt: skip
    w("Conversion on first use (`tfx pull MODEL --engine ct2 --compute-type X`, whole process, torch + transformers imported):"
      + "; ".join(f" {k}: {c['wall_s']:.1f} s, peak {c['rss_mb']:.0f} MB" for k, c in conv.items()) + ". The runs below find the copies converted.\n")  # fmt: skip
    figures: dict = {}
    for sc in scs:
        runs = R[sc["key"]]
        n_items = len(sc["inputs"])
        total = n_items * sc["per"]
        w(f"### {sc['title']}\n")
        rate = "tokens/s" if sc["unit"] == "tokens" else "sentences/s"
        w(f"| program | whole program (s) | start-up + load (s) | compute (s) | {rate} (compute) | vs transformers: whole / compute | peak RSS (MB) | RSS vs transformers | imports torch / transformers |")
        w("|---|---|---|---|---|---|---|---|---|")
        figures[sc["key"]] = {}
        for name in sc["programs"]:
            xs = runs[name]
            wall, comp, rss = (bench.med([x[k] for x in xs]) for k in ("wall_s", "compute_s", "rss_mb"))
            startup = bench.med([x["wall_s"] - x["compute_s"] for x in xs])
            up_w, up_c = paired(runs, "transformers", name, "wall_s"), paired(runs, "transformers", name, "compute_s")
            rss_ratio = bench.med([x["rss_mb"] / b["rss_mb"] for b, x in zip(runs["transformers"], xs)])
            heavy = xs[-1]["heavy"]
            imports = " / ".join("yes" if m in heavy else "no" for m in ("torch", "transformers"))
            figures[sc["key"]][name] = {"wall_s": wall, "compute_s": comp, "rss_mb": rss, "rate": total / comp, "up_wall": up_w, "up_compute": up_c, "rss_ratio": rss_ratio}
            w(f"| {PROGRAMS[name][0]} | {wall:.2f} | {startup:.2f} | {comp:.2f} | {total / comp:.1f} | {up_w:.2f}x / {up_c:.2f}x | {rss:.0f} | {rss_ratio:.2f}x | {imports} |")
        base = runs["transformers"][-1]
        counts = {n: sorted({t for x in runs[n] for t in x["tokens"]}) for n in sc["programs"]}
        checks = ["new tokens per record, each program: " + ", ".join(f"{n} {'/'.join(map(str, c))}" for n, c in counts.items())]
        for name in sc["programs"][1:]:
            checks.append(f"{name} = transformers {same(runs[name][-1]['outputs'], base['outputs'])}")
        if "fast" in runs:
            checks.append(f"fast path taken: {runs['fast'][-1]['fast']}")
        figures[sc["key"]]["checks"] = checks
        w("\nOutputs identical to the transformers path (records): " + "; ".join(checks) + ".\n")
    return "\n".join(lines) + "\n", figures


def targets(figures: dict) -> str:
    rows = []
    if "decode1" in figures:
        d = figures["decode1"]
        rows.append(("int8 ≥ 2.5x transformers, batch-1 decode (compute tokens/s)", d["ct2_int8"]["up_compute"], 2.5, "x"))
        rows.append(("int8 ≥ 2.5x transformers, batch-1 decode (whole program)", d["ct2_int8"]["up_wall"], 2.5, "x"))
    for key, name in (("t5", "T5-small"), ("marian", "Marian-size")):
        if key in figures:
            rows.append((f"int8 ≥ 3x transformers, {name}, the sentences (whole program)", figures[key]["ct2_int8"]["up_wall"], 3.0, "x"))
    for key in figures:
        rows.append((f"int8 peak RSS ≤ 0.5x transformers ({key})", figures[key]["ct2_int8"]["rss_ratio"], 0.5, "≤x"))
    out = ["### Targets\n", "| target | measured | needed | met |", "|---|---|---|---|"]
    for name, value, need, unit in rows:
        met = value <= need if unit == "≤x" else value >= need
        out.append(f"| {name} | {value:.2f}x | {'≤' if unit == '≤x' else '≥'} {need:.1f}x | {'yes' if met else '**no**'} |")
    out.append("\n### CT2 float32 against the hand-written fast GPT-2 path (same run)\n")
    out.append("| scenario | fast path tokens/s (compute) | ct2 fp32 tokens/s (compute) | ct2 fp32 / fast, compute | ct2 fp32 / fast, whole program |")
    out.append("|---|---|---|---|---|")
    for key, f in (("batch 1", figures.get("decode1")), ("32 x 32", figures.get("gen32"))):
        if f is None:
            continue
        out.append(f"| {key} | {f['fast']['rate']:.1f} | {f['ct2_fp32']['rate']:.1f} | {f['ct2_fp32']['rate'] / f['fast']['rate']:.2f}x"
                   f" | {f['fast']['wall_s'] / f['ct2_fp32']['wall_s']:.2f}x |")  # fmt: skip
    return "\n".join(out) + "\n"


def notes(meta: dict) -> str:
    """bench/NOTES-ct2.md, the hand-written reading of the recorded run (not for --smoke)."""
    path = HERE / "NOTES-ct2.md"
    return "" if "--smoke" in meta["command"] or not path.exists() else "\n" + path.read_text(encoding="utf-8")


def write(out: Path, body: str, replace_section: bool) -> None:
    """Into `out`: the whole file (--smoke, --out), or the section between the markers of bench/RESULTS.md."""
    block = f"{START}\n## CTranslate2 backend (`--engine ct2`)\n\n{body}{END}\n"
    if replace_section and out.exists():
        text = out.read_text(encoding="utf-8")
        if START in text and END in text:
            head, rest = text.split(START, 1)
            text = head + block + rest.split(END, 1)[1].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + block
        out.write_text(text, encoding="utf-8")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(block, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny models, one rep: checks the machinery")
    ap.add_argument("--reps", type=int, default=None, help="reps of each program (default 3; --smoke 1)")
    ap.add_argument("--threads", type=int, default=None, help="threads for every program (default: min(2, cores))")
    ap.add_argument("--out", type=Path, default=None, help="write the section alone here (default: into bench/RESULTS.md)")
    ap.add_argument("--hub-cache", type=Path, default=None, help="--smoke: the test cache holding the tiny models")
    ap.add_argument("--from-json", type=Path, default=None, help="re-render from a run's saved .json (no measuring)")
    args = ap.parse_args(argv)
    t_begin = time.perf_counter()
    log = lambda msg: print(f"[bench_ct2 {time.perf_counter() - t_begin:6.1f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    out = args.out or HERE / "RESULTS.md"
    if args.from_json:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        body, figures = section(saved["raw"], saved["scenarios"], saved["conversion"], saved["meta"])
        write(out, body + "\n" + targets(figures) + notes(saved["meta"]), replace_section=args.out is None)
        return 0
    cfg = SMOKE if args.smoke else FULL
    reps = args.reps or (1 if args.smoke else 3)
    threads = args.threads or min(2, os.cpu_count() or 1)
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cores)  # inherited by every program
    with tempfile.TemporaryDirectory(prefix="tfx-bench-ct2-") as tmp:
        if args.smoke:
            if args.hub_cache is None:
                ap.error("--smoke needs --hub-cache (the tests' cache of tiny models)")
            cache = models_ct2.copy_tiny(args.hub_cache, Path(tmp) / "hub", [cfg["gpt2"], cfg["t5"], cfg["marian"]])
        else:
            cache = models_ct2.build(HERE / ".cache" / "hub-ct2", log=log)
        scs = scenarios(cfg, cache)
        env = bench.child_env(str(cache), len(cores), str(Path(tmp) / "hf-home"))  # a fresh HF_HOME: conversion is first use
        runner = bench.Runner(env, Path(tmp))
        vocab = json.loads((models_ct2.snapshot(cache, cfg["marian"]) / "vocab.json").read_text(encoding="utf-8"))
        meta = {
            "command": "python bench/bench_ct2.py" + (" --smoke" if args.smoke else "") + (f" --reps {args.reps}" if args.reps else ""),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "reps": reps, "threads": len(cores),
            "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(), "machine": bench.machine(),
            "versions": {**bench.versions(), "ctranslate2": _version("ctranslate2")}, "marian_vocab": len(vocab),
        }  # fmt: skip
        json_out = out.with_name("RESULTS-ct2.json") if args.out is None else out.with_suffix(".json")
        json_out.parent.mkdir(parents=True, exist_ok=True)
        conv: dict = {}

        def save(R: dict, reps_done: int) -> None:
            meta.update(minutes=(time.perf_counter() - t_begin) / 60, reps=reps_done)
            json_out.write_text(json.dumps({"meta": meta, "scenarios": scs, "conversion": conv, "raw": R}, indent=1), encoding="utf-8")

        conv.update(convert_all(runner, scs, log))
        R = measure(runner, scs, reps, log, save)
        save(R, reps)
    body, figures = section(R, scs, conv, meta)
    write(out, body + "\n" + targets(figures) + notes(meta), replace_section=args.out is None)
    log(f"wrote {out}")
    return 0


def _version(pkg: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


if __name__ == "__main__":
    sys.exit(main())
