"""tfx's benchmark: builds random-weight models at the real sizes into an offline cache, runs tfx and the
plain-transformers ways of doing the same work side by side (interleaved, repeated, medians), and writes
bench/RESULTS.md.

    python bench/bench.py                 # the full run (~20 minutes on 2 cores)
    python bench/bench.py --smoke --out /tmp/r.md [--hub-cache DIR]   # tiny models, seconds, for CI

Every program runs in its own child process (bench/harness.py), so start-up, load and peak RSS are each
program's own; all of them get the same thread settings (OMP/MKL threads = physical cores)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
PY = sys.executable
TFX = [PY, "-m", "tfx"]

FULL = {
    "gpt2": "openai-community/gpt2", "bert": "google-bert/bert-base-uncased", "t5": "google-t5/t5-small",
    "prompts": 32, "new_tokens": 32, "fill": 1000, "translate": 64, "decode_tokens": 34, "decode_batches": [1, 32],
    "grouped": False, "startup_reps": 2, "help_reps": 5, "load_models": 3, "hw_reps": 15,
}  # fmt: skip
SMOKE = {
    "gpt2": "tfx-test/tiny-gpt2", "bert": "tfx-test/tiny-bert", "t5": "tfx-test/tiny-t5",
    "prompts": 4, "new_tokens": 8, "fill": 12, "translate": 3, "decode_tokens": 6, "decode_batches": [1, 4],
    "grouped": True, "startup_reps": 1, "help_reps": 1, "load_models": 1, "hw_reps": 3,
}  # fmt: skip


# ---- running children ----------------------------------------------------------------------------------


class Runner:
    def __init__(self, env: dict[str, str], work: Path):
        self.env, self.work = env, work

    def run(self, cmd: list[str], stdin: str | None = None, env: dict | None = None, timeout: float = 1800) -> dict:
        """Run to the end; wall seconds, peak RSS (MB) from wait4, stdout, stderr."""
        out, err, inp = (self.work / n for n in ("out", "err", "in"))
        inp.write_text(stdin or "", encoding="utf-8")
        with open(inp, "rb") as fi, open(out, "wb") as fo, open(err, "wb") as fe:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=fi, stdout=fo, stderr=fe, env=env or self.env, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        result = {"wall_s": wall, "rss_mb": usage.ru_maxrss * 1024 / 1e6, "out": out.read_text("utf-8", "replace"), "err": err.read_text("utf-8", "replace")}
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:6])}... exited {proc.returncode}:\n{result['err'][-3000:]}")
        return result

    def harness(self, mode: str, payload: dict) -> dict:
        arg = self.work / f"{mode}.json"
        arg.write_text(json.dumps(payload), encoding="utf-8")
        r = self.run([PY, str(HERE / "harness.py"), mode, f"@{arg}"])
        data = json.loads(r["out"].strip().splitlines()[-1])
        return {**data, "wall_s": r["wall_s"], "rss_mb": r["rss_mb"]}

    def harness_many(self, calls: list[tuple[str, dict]]) -> list[dict]:
        """Several modes in one child (--smoke): wall time and RSS are the group's."""
        r = self.harness("multi", {"modes": calls})
        return [{**x, "wall_s": r["wall_s"], "rss_mb": r["rss_mb"]} for x in r["results"]]

    def first_output(self, cmd: list[str], skip: int) -> float:
        """Seconds from spawn until stdout carries more than `skip` bytes (the echoed prompt)."""
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env, cwd=ROOT)
        got, first = b"", None
        while True:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            got += chunk
            if first is None and len(got) > skip:
                first = time.perf_counter() - t0
        proc.wait()
        if proc.returncode != 0 or first is None:
            raise RuntimeError(f"{' '.join(cmd)} gave no output past the prompt (exit {proc.returncode})")
        return first


def med(xs: list[float]) -> float:
    return statistics.median(xs)


# ---- inputs --------------------------------------------------------------------------------------------


def inputs(cfg: dict, smoke: bool) -> dict:
    if smoke:
        import tiny_models as tm

        prompts = [p for p, _ in tm.GPT2_CASES][: cfg["prompts"]]
        fill = [c for c, _ in tm.FILL_MASK_CASES] * (cfg["fill"] // len(tm.FILL_MASK_CASES))
        translate = [s for s, _ in tm.TRANSLATIONS[("en", "fr")]][: cfg["translate"]]
        return {"prompts": prompts, "fill": fill, "translate": translate}
    import models

    words = models.vocabulary()
    prompts = models.sentences(cfg["prompts"], seed=5, lengths=(4, 16), words=words)
    rng = random.Random(9)
    fill = []
    for sentence in models.sentences(cfg["fill"], seed=6, lengths=(6, 28), words=words):
        tokens = sentence.split(" ")
        tokens[rng.randrange(len(tokens) - 1)] = "[MASK]"
        fill.append(" ".join(tokens))
    translate = models.sentences(cfg["translate"], seed=8, lengths=(6, 20), words=words)
    return {"prompts": [p.rstrip(".?!") for p in prompts], "fill": fill, "translate": translate}


# ---- the measurements ----------------------------------------------------------------------------------


def measure(runner: Runner, cfg: dict, data: dict, cache: str, reps: int, log) -> dict:
    R: dict = {"hw": [], "gen": {}, "fill": {}, "tr": {}, "startup": {}, "load": {}, "decode": None}
    gen_args = {"cache": cache, "model": cfg["gpt2"], "prompts": data["prompts"], "new_tokens": cfg["new_tokens"]}
    fill_args = {"cache": cache, "model": cfg["bert"], "sentences": data["fill"], "batch_size": 32}
    tr_args = {"cache": cache, "model": cfg["t5"], "sentences": data["translate"], "new_tokens": cfg["new_tokens"]}
    n = cfg["new_tokens"]
    gen_cli = [*TFX, "generate", "-m", cfg["gpt2"], "--max-new-tokens", str(n), "--greedy", "-q"]
    fill_cli = [*TFX, "fill-mask", "-m", cfg["bert"], "-q"]
    tr_cli = [*TFX, "translate", "-m", cfg["t5"], "--to", "fr", "--max-new-tokens", str(n), "--num-beams", "1", "-q"]

    def add(table: dict, key: str, value: dict) -> None:
        table.setdefault(key, []).append(value)

    R["hw"].append(runner.harness("hw", {"reps": cfg["hw_reps"]}))
    for rep in range(reps):
        prompt = data["prompts"][0]
        gen_in, fill_in, tr_in = ("\n".join(data[k]) + "\n" for k in ("prompts", "fill", "translate"))
        if cfg["grouped"]:  # --smoke: one child for the baselines, one for tfx in-process
            log("baselines and tfx, grouped")
            base = runner.harness_many([("gen_seed_loop", gen_args), ("gen_batched", gen_args), ("fill_pipeline", fill_args), ("translate_loop", tr_args)])
            ours = runner.harness_many([("gen_tfx", gen_args), ("fill_tfx", fill_args), ("translate_tfx", tr_args)])
            for (table, key), value in zip(((R["gen"], "seed_loop"), (R["gen"], "batched"), (R["fill"], "pipeline"), (R["tr"], "loop")), base):
                add(table, key, value)
            for (table, key), value in zip(((R["gen"], "tfx"), (R["fill"], "tfx"), (R["tr"], "tfx")), ours):
                add(table, key, value)
        else:
            log(f"rep {rep + 1}/{reps}: generate")
            add(R["gen"], "seed_loop", runner.harness("gen_seed_loop", gen_args))
            add(R["gen"], "batched", runner.harness("gen_batched", gen_args))
            add(R["gen"], "tfx", runner.harness("gen_tfx", gen_args))
            log(f"rep {rep + 1}/{reps}: fill-mask")
            add(R["fill"], "pipeline", runner.harness("fill_pipeline", fill_args))
            add(R["fill"], "tfx", runner.harness("fill_tfx", fill_args))
            log(f"rep {rep + 1}/{reps}: translate")
            add(R["tr"], "loop", runner.harness("translate_loop", tr_args))
            add(R["tr"], "tfx", runner.harness("translate_tfx", tr_args))
        log(f"rep {rep + 1}/{reps}: the CLI")
        add(R["gen"], "tfx_cli", runner.run(gen_cli, stdin=gen_in))
        add(R["fill"], "tfx_cli", runner.run(fill_cli, stdin=fill_in))
        add(R["tr"], "tfx_cli", runner.run(tr_cli, stdin=tr_in))
        log(f"rep {rep + 1}/{reps}: start-up and load")
        ttft_cmd = [*TFX, "generate", "-m", cfg["gpt2"], "--stream", "--max-new-tokens", "8", "--greedy", prompt]
        for _ in range(cfg["startup_reps"]):
            add(R["startup"], "tfx_first_token", {"s": runner.first_output(ttft_cmd, len(prompt.encode()))})
            add(R["startup"], "bare_load", {"s": runner.harness("bare_load", gen_args)["ready_s"]})
            add(R["startup"], "bare_first_token", {"s": runner.harness("bare_first_token", {**gen_args, "prompt": prompt})["ready_s"]})
        for cmd in (["--help"], ["generate", "--help"], ["fill-mask", "--help"], ["models"], ["env"], ["cache", "ls"]):
            for _ in range(cfg["help_reps"]):
                add(R["startup"], " ".join(cmd), {"s": runner.run([*TFX, *cmd])["wall_s"]})
        for task, model in (("generate", cfg["gpt2"]), ("fill-mask", cfg["bert"]), ("translate", cfg["t5"]))[: cfg["load_models"]]:
            for which in ("tfx", "transformers"):
                add(R["load"], f"{task}/{which}", runner.harness("load_time", {"cache": cache, "model": model, "task": task, "which": which}))
    log("decode rates")
    R["decode"] = runner.harness("decode_rate", {"cache": cache, "model": cfg["gpt2"], "new_tokens": cfg["decode_tokens"], "batches": cfg["decode_batches"], "reps": reps})
    R["hw"].append(runner.harness("hw", {"reps": cfg["hw_reps"]}))
    R["imports"] = import_check(runner)
    return R


def import_check(runner: Runner) -> dict:
    """Which of torch / transformers each light command imports (it must be neither)."""
    probe = (  # at exit, whichever way the CLI exits (it ends with os._exit)
        "import sys, os, atexit, json\n"
        "def report():\n"
        "    sys.stderr.write('HEAVY=' + json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]) + '\\n'); sys.stderr.flush()\n"
        "real_exit = os._exit\n"
        "os._exit = lambda code: (report(), real_exit(code))\n"
        "atexit.register(report)\n"
        "sys.argv = ['tfx'] + sys.argv[1:]\n"
        "from tfx.cli import main\n"
        "main()\n"
    )
    found = {}
    for cmd in (["--help"], ["generate", "--help"], ["fill-mask", "--help"], ["translate", "--help"], ["summarize", "--help"], ["models"], ["env"], ["cache", "ls"], ["search", "gpt2"]):
        try:
            r = runner.run([PY, "-c", probe, *cmd])
            err = r["err"]
        except RuntimeError as exc:  # e.g. search offline: an error exit still tells what was imported
            err = str(exc)
        line = next((x for x in err.splitlines() if x.startswith("HEAVY=")), 'HEAVY=["(no report: unknown)"]')
        found[" ".join(cmd)] = json.loads(line[6:])
    return found


# ---- the report ----------------------------------------------------------------------------------------


def same(a: list[str], b: list[str]) -> str:
    hits = sum(x == y for x, y in zip(a, b))
    return f"{hits}/{len(a)}"


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "tokenizers", "huggingface_hub", "safetensors", "typer"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "-"
    try:
        out["tfx commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() or "-"
    except OSError:
        out["tfx commit"] = "-"
    return out


def weights_mb(cache: str, repo: str) -> float:
    from harness import _snapshot

    return os.path.getsize(os.path.join(_snapshot(cache, repo), "model.safetensors")) / 1e6


def report(R: dict, cfg: dict, data: dict, cache: str, meta: dict) -> tuple[str, dict]:
    lines: list[str] = []
    w = lines.append
    hw = R["hw"]
    read = med([h["read_GBps"]["median"] for h in hw])
    flops = med([h["matmul_GFLOPs"]["median"] for h in hw])
    gen, fill, tr = R["gen"], R["fill"], R["tr"]
    n_new, n_prompts = cfg["new_tokens"], len(data["prompts"])
    g = {k: {m: med([x[m] for x in v]) for m in ("wall_s", "rss_mb", *(("compute_s", "load_s", "import_s") if k != "tfx_cli" else ()))} for k, v in gen.items()}
    f = {k: {m: med([x[m] for x in v]) for m in ("wall_s", "rss_mb", *(("compute_s", "load_s", "import_s") if k != "tfx_cli" else ()))} for k, v in fill.items()}
    t = {k: {m: med([x[m] for x in v]) for m in ("wall_s", "rss_mb", *(("compute_s", "load_s", "import_s") if k != "tfx_cli" else ()))} for k, v in tr.items()}
    dec = R["decode"]
    b1, bn = f"batch{cfg['decode_batches'][0]}", f"batch{cfg['decode_batches'][1]}"
    nbytes = dec["weights_read_per_token_bytes"]
    bw_bound = read * 1e9 / nbytes
    flop_per_token = nbytes / 4 * 2  # every weight is one multiply-add per token
    compute_bound = flops * 1e9 / flop_per_token
    tfx_b1, hf_b1 = med(dec[b1]["tfx"]), med(dec[b1]["transformers"])
    tfx_bn, hf_bn = med(dec[bn]["tfx"]), med(dec[bn]["transformers"])
    tfx_gen_tps = n_prompts * n_new / g["tfx"]["compute_s"]
    # the limits measured right before each decode run (newer harness) or, failing that, at start and end
    reads = dec.get("read_GBps", {}).get(b1) or [read] * len(dec[b1]["tfx"])
    peaks = dec.get("matmul_GFLOPs", {}).get(bn) or [flops] * len(dec[bn]["tfx"])
    pct = lambda rates, limits, per: [100 * r * per / (lim * 1e9) for r, lim in zip(rates, limits)]  # noqa: E731
    pct_b1 = {k: pct(dec[b1][k], reads, nbytes) for k in ("tfx", "transformers")}
    pct_bn = {k: pct(dec[bn][k], peaks, flop_per_token) for k in ("tfx", "transformers")}
    bw_bound, compute_bound = med(reads) * 1e9 / nbytes, med(peaks) * 1e9 / flop_per_token
    st = {k: med([x["s"] for x in v]) for k, v in R["startup"].items()}
    ld = {k: med([x["load_s"] for x in v]) for k, v in R["load"].items()}
    wmb = {k: weights_mb(cache, cfg[k]) for k in ("gpt2", "bert", "t5")}
    ratio = lambda a, b: a / b  # noqa: E731

    w("# tfx benchmark results\n")
    w(f"Written by `{meta['command']}` on {meta['date']} in {meta['minutes']:.1f} minutes. Models: random weights at the real sizes"
      " (bench/models.py), tokenizers trained locally at the real vocabulary sizes; offline cache. Every figure is the"
      f" median of {meta['reps']} runs, the programs compared interleaved within each run, each in its own process.\n")  # fmt: skip
    w("## Machine\n")
    m = meta["machine"]
    w(f"- CPU: {m.get('cpu')}, {m.get('cores')} cores; RAM {m.get('ram_gb', '?')} GB. Threads: OMP/MKL = {meta['threads']} for every program.")
    w(f"- Load average (1 min) at start / end: {meta['load'][0]:.2f} / {meta['load'][1]:.2f} — the machine is shared; absolute figures move, ratios inside one run are the comparison.")
    w("- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    w(f"- Memory read bandwidth (sum over 256 MiB, {hw[0]['threads']} threads): median {read:.1f} GB/s"
      f" (best {max(h['read_GBps']['best'] for h in hw):.1f}); copy: {med([h['copy_GBps']['median'] for h in hw]):.1f} GB/s copied (read + write each that much).")  # fmt: skip
    w(f"- fp32 matmul (2048², MKL): median {flops:.0f} GFLOP/s (best {max(h['matmul_GFLOPs']['best'] for h in hw):.0f}); start / end of run: "
      + " / ".join(f"{h['matmul_GFLOPs']['median']:.0f}" for h in hw) + " GFLOP/s, " + " / ".join(f"{h['read_GBps']['median']:.1f}" for h in hw) + " GB/s.\n")  # fmt: skip

    w(f"## generate: {n_prompts} prompts × {n_new} new tokens, greedy, GPT-2 small ({cfg['gpt2']})\n")
    w("| program | wall, whole program (s) | of which compute (s) | tokens/s (compute) | vs seed loop (wall / compute) | vs one batched generate (wall / compute) | peak RSS (MB) |")
    w("|---|---|---|---|---|---|---|")
    rows = [("seed's loop: `model.generate` per prompt", "seed_loop"), ("`model.generate`, all prompts in one call", "batched"), ("tfx, in-process (`Pump`, same code as the CLI)", "tfx"), ("`tfx generate` CLI, prompts on stdin", "tfx_cli")]
    for label, key in rows:
        c = g[key].get("compute_s")
        comp = fmt(c) if c else "—"
        tps = fmt(n_prompts * n_new / c, 1) if c else "—"
        vs_seed = f"{ratio(g['seed_loop']['wall_s'], g[key]['wall_s']):.2f}x / " + (f"{ratio(g['seed_loop']['compute_s'], c):.2f}x" if c else "—")
        vs_b = f"{ratio(g['batched']['wall_s'], g[key]['wall_s']):.2f}x / " + (f"{ratio(g['batched']['compute_s'], c):.2f}x" if c else "—")
        w(f"| {label} | {fmt(g[key]['wall_s'])} | {comp} | {tps} | {vs_seed} | {vs_b} | {g[key]['rss_mb']:.0f} |")
    gout = {k: v[-1]["outputs"] if "outputs" in v[-1] else v[-1]["out"].splitlines() for k, v in gen.items()}
    w(f"\nIdentical outputs: tfx vs one batched generate {same(gout['tfx'], gout['batched'])}, tfx CLI vs batched"
      f" {same(gout['tfx_cli'], gout['batched'])}, tfx vs the seed's loop {same(gout['tfx'], gout['seed_loop'])},"
      f" batched vs the seed's loop {same(gout['batched'], gout['seed_loop'])}. tfx took its fast path: {gen['tfx'][-1].get('fast')}.\n")  # fmt: skip

    w("### Decode rate against the machine's limits\n")
    w(f"One decode step reads every weight once: {nbytes / 1e6:.0f} MB (fp32). Bandwidth bound = read bandwidth / bytes per step"
      f" = **{bw_bound:.1f} tokens/s** at batch 1. Compute bound = matmul FLOP/s / {flop_per_token / 1e9:.3f} GFLOP per token"
      f" = **{compute_bound:.0f} tokens/s**. Decode rate = extra tokens / extra time between a {2}-token and a"
      f" {cfg['decode_tokens']}-token run (prefill cancels out).\n")  # fmt: skip
    if "read_GBps" in dec:
        w("Each run measures the machine's read bandwidth and matmul FLOP/s (best of 3) right before its decoding, and its % of"
          " the bound uses those: the shared machine's own speed moves between runs. Per-run values in brackets.\n")  # fmt: skip
    else:
        w("The bounds use the medians of the machine measurements at the start and end of the run. Per-run values in brackets.\n")
    w("| | tfx tokens/s | transformers tokens/s | tfx / transformers | tfx % of bound | transformers % of bound |")
    w("|---|---|---|---|---|---|")
    runs = lambda xs, d=0: "[" + ", ".join(f"{x:.{d}f}" for x in xs) + "]"  # noqa: E731
    w(f"| {b1.replace('batch', 'batch ')} (bound: bandwidth, {runs(reads, 1)} GB/s) | {tfx_b1:.1f} {runs(dec[b1]['tfx'], 1)} | {hf_b1:.1f} {runs(dec[b1]['transformers'], 1)} | {tfx_b1 / hf_b1:.2f}x"
      f" | {med(pct_b1['tfx']):.0f} % {runs(pct_b1['tfx'])} | {med(pct_b1['transformers']):.0f} % {runs(pct_b1['transformers'])} |")  # fmt: skip
    w(f"| {bn.replace('batch', 'batch ')} (bound: compute, {runs(peaks)} GFLOP/s) | {tfx_bn:.0f} {runs(dec[bn]['tfx'])} | {hf_bn:.0f} {runs(dec[bn]['transformers'])} | {tfx_bn / hf_bn:.2f}x"
      f" | {med(pct_bn['tfx']):.0f} % {runs(pct_bn['tfx'])} | {med(pct_bn['transformers']):.0f} % {runs(pct_bn['transformers'])} |")  # fmt: skip
    w(f"\nAt batch 1, tfx streams weights at {tfx_b1 * nbytes / 1e9:.1f} GB/s against {med(reads):.1f} GB/s read bandwidth"
      f" (transformers: {hf_b1 * nbytes / 1e9:.1f} GB/s). The whole {n_prompts}-prompt run, prefill included, made"
      f" {tfx_gen_tps:.0f} tokens/s = {100 * tfx_gen_tps / compute_bound:.0f} % of the compute bound.\n")  # fmt: skip

    n_fill = len(data["fill"])
    w(f"## fill-mask: {n_fill} sentences, one [MASK] each, BERT-base ({cfg['bert']})\n")
    w("| program | wall (s) | compute (s) | sentences/s (compute) | tfx speed-up (wall / compute) | peak RSS (MB) |")
    w("|---|---|---|---|---|---|")
    for label, key in (("transformers `pipeline('fill-mask')`, batch_size=32", "pipeline"), ("tfx, in-process", "tfx"), ("`tfx fill-mask` CLI, stdin", "tfx_cli")):
        c = f[key].get("compute_s")
        up = f"{f['pipeline']['wall_s'] / f[key]['wall_s']:.2f}x / " + (f"{f['pipeline']['compute_s'] / c:.2f}x" if c else "—")
        w(f"| {label} | {fmt(f[key]['wall_s'])} | {fmt(c) if c else '—'} | {fmt(n_fill / c, 1) if c else '—'} | {up} | {f[key]['rss_mb']:.0f} |")
    fout = {k: v[-1]["outputs"] if "outputs" in v[-1] else v[-1]["out"].splitlines() for k, v in fill.items()}
    if "words" in fill["tfx"][-1] and "words" in fill["pipeline"][-1]:
        w(f"\nSame best word as the pipeline: {same(fill['tfx'][-1]['words'], fill['pipeline'][-1]['words'])} sentences"
          " (the pipeline's sentences are the tokenizer's normalised text, lower-cased and re-spaced, so words are compared).\n")  # fmt: skip
    else:
        w("\nThis run kept only the sentences, and the pipeline's are the tokenizer's normalised text (lower-cased, re-spaced), so"
          " they cannot be compared with tfx's word for word; see the separate check in the notes below.\n")  # fmt: skip

    n_tr = len(data["translate"])
    w(f"## translate: {n_tr} sentences en→fr, T5-small ({cfg['t5']}), greedy, {n_new} new tokens at most\n")
    w("| program | wall (s) | compute (s) | sentences/s (compute) | tfx speed-up (wall / compute) | peak RSS (MB) |")
    w("|---|---|---|---|---|---|")
    for label, key in (("`model.generate` loop, one sentence at a time", "loop"), ("tfx, in-process", "tfx"), ("`tfx translate` CLI, stdin", "tfx_cli")):
        c = t[key].get("compute_s")
        up = f"{t['loop']['wall_s'] / t[key]['wall_s']:.2f}x / " + (f"{t['loop']['compute_s'] / c:.2f}x" if c else "—")
        w(f"| {label} | {fmt(t[key]['wall_s'])} | {fmt(c) if c else '—'} | {fmt(n_tr / c, 1) if c else '—'} | {up} | {t[key]['rss_mb']:.0f} |")
    tout = {k: v[-1]["outputs"] if "outputs" in v[-1] else v[-1]["out"].splitlines() for k, v in tr.items()}
    w(f"\nIdentical outputs, tfx vs the loop: {same(tout['tfx'], tout['loop'])}.\n")

    w("## Start-up\n")
    w("| what | seconds (median) |")
    w("|---|---|")
    w(f"| `tfx generate --stream` → first generated text on stdout (first word) | {st['tfx_first_token']:.2f} |")
    w(f"| bare script: `import transformers` + load tokenizer and model (no token yet) | {st['bare_load']:.2f} |")
    w(f"| bare script: the same + `generate(max_new_tokens=1)` | {st['bare_first_token']:.2f} |")
    for cmd in ("--help", "generate --help", "fill-mask --help", "models", "env", "cache ls"):
        w(f"| `tfx {cmd}` (whole process) | {st[cmd]:.3f} |")
    heavy = {k: v for k, v in R["imports"].items() if v}
    w(f"\nCommands checked for heavy imports (torch, transformers): {', '.join('`tfx ' + k + '`' for k in R['imports'])} — "
      + ("none imports either." if not heavy else "imports found: " + json.dumps(heavy)) + "\n")  # fmt: skip

    w("## Model load time (from `torch` imported to a model ready to run)\n")
    w("| model | tfx | transformers (`from transformers import Auto…` + `from_pretrained`) |")
    w("|---|---|---|")
    for task, key in (("generate", "gpt2"), ("fill-mask", "bert"), ("translate", "t5")):
        if f"{task}/tfx" not in R["load"]:
            continue
        fast = R["load"][f"{task}/tfx"][-1].get("fast")
        w(f"| {cfg[key]} ({task}) | {ld[f'{task}/tfx']:.2f} s{' (fast path)' if fast else ''} | {ld[f'{task}/transformers']:.2f} s |")

    w("\n## Peak RSS against the weights\n")
    w("| run | weights (MB, safetensors) | peak RSS (MB) | RSS − weights (MB) |")
    w("|---|---|---|---|")
    rss_rows = [
        (f"`tfx generate` CLI, {n_prompts} prompts (batch {min(32, n_prompts)})", "gpt2", g["tfx_cli"]["rss_mb"]),
        ("seed's loop (transformers)", "gpt2", g["seed_loop"]["rss_mb"]),
        ("one batched generate (transformers)", "gpt2", g["batched"]["rss_mb"]),
        (f"`tfx fill-mask` CLI, {n_fill} sentences", "bert", f["tfx_cli"]["rss_mb"]),
        ("fill-mask pipeline (transformers)", "bert", f["pipeline"]["rss_mb"]),
        (f"`tfx translate` CLI, {n_tr} sentences", "t5", t["tfx_cli"]["rss_mb"]),
    ]
    for label, key, rss in rss_rows:
        w(f"| {label} | {wmb[key]:.0f} | {rss:.0f} | {rss - wmb[key]:.0f} |")

    gb, gs, fp = g["batched"], g["seed_loop"], f["pipeline"]
    def paired(a: list[dict], ma: str, b: list[dict], mb: str) -> list[float]:
        """a/b per run: the two programs ran back to back in that run, under the same background load."""
        return [x[ma] / y[mb] for x, y in zip(a, b)]

    rss = lambda runs, key: [x["rss_mb"] - wmb[key] for x in runs]  # noqa: E731
    dec_b1 = pct_b1["tfx"]
    targets = [  # (target, per-run values, needed, unit): judged on their median; "s" and "MB": at most
        ("generate ≥ 3x the seed's loop, whole program (wall)", paired(gen["seed_loop"], "wall_s", gen["tfx_cli"], "wall_s"), 3.0, "x"),
        ("generate ≥ 3x the seed's loop, compute", paired(gen["seed_loop"], "compute_s", gen["tfx"], "compute_s"), 3.0, "x"),
        ("generate ≥ 1.3x one batched generate, compute", paired(gen["batched"], "compute_s", gen["tfx"], "compute_s"), 1.3, "x"),
        ("generate ≥ 1.3x one batched generate, whole program (wall)", paired(gen["batched"], "wall_s", gen["tfx_cli"], "wall_s"), 1.3, "x"),
        ("batch-1 decode ≥ 85 % of the bandwidth bound", dec_b1, 85.0, "%"),
        ("fill-mask ≥ 1.5x the pipeline, compute", paired(fill["pipeline"], "compute_s", fill["tfx"], "compute_s"), 1.5, "x"),
        ("fill-mask ≥ 1.5x the pipeline, whole program (wall)", paired(fill["pipeline"], "wall_s", fill["tfx_cli"], "wall_s"), 1.5, "x"),
        ("peak RSS ≤ weights + 300 MB: `tfx generate`, 32 prompts", rss(gen["tfx_cli"], "gpt2"), 300.0, "MB"),
        ("peak RSS ≤ weights + 300 MB: `tfx fill-mask`", rss(fill["tfx_cli"], "bert"), 300.0, "MB"),
        ("peak RSS ≤ weights + 300 MB: `tfx translate`", rss(tr["tfx_cli"], "t5"), 300.0, "MB"),
        ("`tfx --help` < 0.3 s", [x["s"] for x in R["startup"]["--help"]], 0.3, "s"),
        ("first token ≤ bare import + load (tfx − bare, s)", paired_diff(R["startup"]["tfx_first_token"], R["startup"]["bare_load"]), 0.0, "s"),
    ]
    return "\n".join(lines) + "\n", targets


def paired_diff(a: list[dict], b: list[dict]) -> list[float]:
    return [x["s"] - y["s"] for x, y in zip(a, b)]


def targets_table(targets: list) -> str:
    out = [
        "## Targets\n",
        "Each target is judged on the median of its per-run values; a ratio is taken inside each run, between two",
        "programs that ran back to back, so that a burst of load from the machine's other users hits both sides.\n",
        "| target | median | per run | needed | met |",
        "|---|---|---|---|---|",
    ]
    show = {"x": "{:.2f}x", "%": "{:.0f} %", "s": "{:.2f} s", "MB": "{:.0f} MB"}
    for name, values, need, unit in targets:
        value = med(values)
        met = value <= need if unit in ("s", "MB") else value >= need
        needed = {"x": f"≥ {need:.2f}x", "%": f"≥ {need:.0f} %", "s": f"≤ {need:.2f} s", "MB": f"≤ weights + {need:.0f} MB"}[unit]
        shown = ("weights + " if unit == "MB" else "") + show[unit].format(value)
        runs = ", ".join(show[unit].format(v) for v in values) if len(values) <= 6 else f"{len(values)} runs"
        out.append(f"| {name} | {shown} | {runs} | {needed} | {'yes' if met else '**no**'} |")
    return "\n".join(out) + "\n"


# ---- main ----------------------------------------------------------------------------------------------


def child_env(cache: str, threads: int, home: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "TFX_FAST", "PYTHONPATH"):
        env.pop(key, None)
    env.update({
        "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache, "HF_HOME": home, "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src"),
    })  # fmt: skip
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny models, one run: checks the machinery in seconds")
    ap.add_argument("--reps", type=int, default=None, help="runs of each measurement (default 3; --smoke 1)")
    ap.add_argument("--out", type=Path, default=None, help="where to write the report (default bench/RESULTS.md)")
    ap.add_argument("--hub-cache", type=Path, default=None, help="an existing cache holding the models")
    ap.add_argument("--threads", type=int, default=None, help="threads for every program (default: the CPU count)")
    ap.add_argument("--from-json", type=Path, default=None, help="re-render a report from a run's saved .json (no measuring)")
    args = ap.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        return write_report(saved["raw"], saved["cfg"], saved["data"], saved["cache"], saved["meta"], args.out or args.from_json.with_suffix(".md"), smoke=args.smoke)
    cfg = SMOKE if args.smoke else FULL
    reps = args.reps or (1 if args.smoke else 3)
    out = args.out or (HERE / ".cache" / "SMOKE.md" if args.smoke else HERE / "RESULTS.md")
    threads = args.threads or os.cpu_count() or 1
    t_begin = time.perf_counter()
    log = lambda msg: print(f"[bench {time.perf_counter() - t_begin:6.1f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if args.hub_cache:
        cache = args.hub_cache
    elif args.smoke:
        import tiny_models

        cache = HERE / ".cache" / "smoke-hub"
        if not (cache / "models--tfx-test--tiny-t5").exists():
            tiny_models.build_all(cache, ["gpt2", "bert", "t5"])
    else:
        import models

        cache = models.build(HERE / ".cache" / "hub", log=log)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tfx-bench-") as tmp:
        runner = Runner(child_env(str(cache), threads, str(Path(tmp) / "hf-home")), Path(tmp))
        data = inputs(cfg, args.smoke)
        R = measure(runner, cfg, data, str(cache), reps, log)
    meta = {
        "command": "python bench/bench.py" + (" --smoke" if args.smoke else "") + (f" --reps {args.reps}" if args.reps else ""),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "minutes": (time.perf_counter() - t_begin) / 60,
        "reps": reps, "threads": threads, "machine": machine(), "versions": versions(), "load": (load_start, os.getloadavg()[0]),
    }  # fmt: skip
    (out.with_suffix(".json")).parent.mkdir(parents=True, exist_ok=True)
    (out.with_suffix(".json")).write_text(json.dumps({"meta": meta, "cfg": cfg, "data": data, "cache": str(cache), "raw": R}, indent=1), encoding="utf-8")
    write_report(R, cfg, data, str(cache), meta, out, smoke=args.smoke)
    log(f"wrote {out}")
    return 0


def write_report(R: dict, cfg: dict, data: dict, cache: str, meta: dict, out: Path, smoke: bool = False) -> int:
    """The generated tables, the targets, then bench/NOTES.md (the hand-written reading of this run)."""
    text, targets = report(R, cfg, data, cache, meta)
    body = text + "\n" + targets_table(targets)
    notes = HERE / "NOTES.md"
    if not smoke and notes.exists():
        body += "\n" + notes.read_text(encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
