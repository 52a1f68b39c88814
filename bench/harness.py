"""The measured programs, each run in a fresh child process by bench.py:

    python bench/harness.py MODE JSON_ARGS   ->   one JSON line on stdout

Baselines are written the way a user of transformers would write them; the tfx modes drive tfx's own
runner (load -> task -> the same Pump the CLI uses) so their compute time can be read apart from start-up.
Every mode reports where its time went (imports, load, compute) and the outputs, for equality checks."""

from __future__ import annotations

import io
import json
import os
import sys
import time

T_START = time.perf_counter()


def _snapshot(cache: str, repo_id: str) -> str:
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    commit = open(os.path.join(repo, "refs", "main")).read().strip()
    return os.path.join(repo, "snapshots", commit)


# ---- the machine ---------------------------------------------------------------------------------------


def hw(args: dict) -> dict:
    """Read bandwidth (a streaming sum over 256 MiB, far beyond the caches), copy bandwidth, and fp32
    matmul FLOP/s (square 2048 x 2048): best and median of repeated runs."""
    import statistics

    import torch

    def runs(fn, n):
        fn()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    n = args.get("reps", 15)
    a = torch.randn(64 * 1024 * 1024)
    b = torch.empty_like(a)
    size = a.numel() * 4
    m = torch.randn(2048, 2048)
    read = [size / t / 1e9 for t in runs(lambda: a.sum(), n)]
    copy = [size / t / 1e9 for t in runs(lambda: b.copy_(a), n)]
    flops = [2 * 2048**3 / t / 1e9 for t in runs(lambda: m @ m, n)]
    pick = lambda xs: {"best": max(xs), "median": statistics.median(xs)}  # noqa: E731
    return {"threads": torch.get_num_threads(), "read_GBps": pick(read), "copy_GBps": pick(copy), "matmul_GFLOPs": pick(flops)}


# ---- generate ------------------------------------------------------------------------------------------


def _hf_causal(path: str):
    t0 = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t1 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    t2 = time.perf_counter()
    return torch, tok, model, {"import_s": t1 - t0, "load_s": t2 - t1}


def gen_seed_loop(args: dict) -> dict:
    """The seed's way: model.generate on one prompt at a time."""
    torch, tok, model, times = _hf_causal(_snapshot(args["cache"], args["model"]))
    t0 = time.perf_counter()
    outs = []
    with torch.inference_mode():
        for prompt in args["prompts"]:
            enc = tok(prompt, return_tensors="pt")
            out = model.generate(**enc, max_new_tokens=args["new_tokens"], do_sample=False, pad_token_id=tok.eos_token_id)
            outs.append(tok.decode(out[0], skip_special_tokens=True))
    return {**times, "compute_s": time.perf_counter() - t0, "outputs": outs}


def gen_batched(args: dict) -> dict:
    """All prompts in one left-padded model.generate call."""
    torch, tok, model, times = _hf_causal(_snapshot(args["cache"], args["model"]))
    t0 = time.perf_counter()
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    enc = tok(args["prompts"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=args["new_tokens"], do_sample=False, pad_token_id=tok.eos_token_id)
    outs = [tok.decode(row, skip_special_tokens=True) for row in out]
    return {**times, "compute_s": time.perf_counter() - t0, "outputs": outs}


def _tfx_run(task: str, texts: list[str], model: str, params: dict, batch_size: int | None = None) -> dict:
    """tfx's own path in this process: spec -> open_task (the one load sequence) -> pipeline, output captured."""
    t0 = time.perf_counter()
    import torch  # noqa: F401 - counted in import_s, as the CLI pays it

    from tfx import io as tio, pipeline, spec
    from tfx.tasks import open_task

    t1 = time.perf_counter()
    run = spec.build(task, spec.SETTINGS[task].from_params(params), model=model, device="cpu", quiet=True, batch_size=batch_size)
    work = open_task(run)
    t2 = time.perf_counter()
    buf = io.StringIO()
    writer = tio.Writer("text", out=buf, model=model)
    pipeline.run(tio.read_records(texts, None, "text"), work, writer, batch_size=batch_size)
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "load_s": t2 - t1, "compute_s": t3 - t2, "outputs": buf.getvalue().splitlines(), "fast": getattr(work, "fast", None) is not None}


def gen_tfx(args: dict) -> dict:
    return _tfx_run("generate", args["prompts"], args["model"], {"max_new_tokens": args["new_tokens"], "do_sample": False})


def decode_rate(args: dict) -> dict:
    """Decode-only tokens/s (prefill excluded) at batch 1 and batch B, tfx's decoder vs transformers'."""
    import torch

    from tfx.fast import gpt2
    from tfx.loading import read_json

    path = _snapshot(args["cache"], args["model"])
    from pathlib import Path

    fast = gpt2.GPT2Greedy.load(Path(path), read_json(Path(path) / "config.json"))
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    new, short = args["new_tokens"], 2
    out: dict = {"weights_read_per_token_bytes": fast.nbytes, "read_GBps": {}, "matmul_GFLOPs": {}}
    probe_a, probe_m = torch.randn(64 * 1024 * 1024), torch.randn(2048, 2048)

    def best_of(fn, work: float, n: int = 3) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return work / min(times) / 1e9

    for batch in args["batches"]:
        ids = (torch.arange(batch * 12).view(batch, 12) * 7919 + 13) % fast.wte.shape[0]
        mask = torch.ones_like(ids)
        rates: dict[str, list[float]] = {"tfx": [], "transformers": []}
        out["read_GBps"][f"batch{batch}"], out["matmul_GFLOPs"][f"batch{batch}"] = [], []
        for _ in range(args.get("reps", 3)):
            # the machine's limits, measured right before this run's decoding (the shared machine drifts)
            out["read_GBps"][f"batch{batch}"].append(best_of(lambda: probe_a.sum(), probe_a.numel() * 4))
            out["matmul_GFLOPs"][f"batch{batch}"].append(best_of(lambda: probe_m @ probe_m, 2 * 2048**3))
            for name in rates:  # interleaved; decode rate = extra tokens over extra time (prefill cancels)
                times = []
                for n in (short, new):
                    t0 = time.perf_counter()
                    if name == "tfx":
                        fast.generate(ids, mask, n, [], 0)
                    else:
                        with torch.inference_mode():
                            hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
                    times.append(time.perf_counter() - t0)
                rates[name].append(batch * (new - short) / (times[1] - times[0]))
        out[f"batch{batch}"] = rates
    return out


# ---- fill-mask -----------------------------------------------------------------------------------------


def fill_pipeline(args: dict) -> dict:
    t0 = time.perf_counter()
    import torch
    from transformers import pipeline

    t1 = time.perf_counter()
    pipe = pipeline("fill-mask", model=_snapshot(args["cache"], args["model"]), device="cpu", top_k=1)
    t2 = time.perf_counter()
    mask = pipe.tokenizer.mask_token
    texts = [s.replace("[MASK]", mask) for s in args["sentences"]]
    with torch.inference_mode():
        found = pipe(texts, batch_size=args["batch_size"])
    t3 = time.perf_counter()
    best = [f[0] if isinstance(f, list) else f for f in found]
    outs, words = [b["sequence"] for b in best], [b["token_str"].strip().removeprefix("##") for b in best]
    return {"import_s": t1 - t0, "load_s": t2 - t1, "compute_s": t3 - t2, "outputs": outs, "words": words}


def fill_tfx(args: dict) -> dict:
    result = _tfx_run("fill-mask", args["sentences"], args["model"], {})
    words = []  # the word tfx put where [MASK] was: its output minus the input's own text around the mask
    for text, out in zip(args["sentences"], result["outputs"]):
        head, tail = text.split("[MASK]", 1)
        words.append(out[len(head) : len(out) - len(tail)].strip())
    return {**result, "words": words}


# ---- translate -----------------------------------------------------------------------------------------


def translate_loop(args: dict) -> dict:
    t0 = time.perf_counter()
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    t1 = time.perf_counter()
    path = _snapshot(args["cache"], args["model"])
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    t2 = time.perf_counter()
    outs = []
    with torch.inference_mode():
        for text in args["sentences"]:
            enc = tok("translate English to French: " + text, return_tensors="pt")
            out = model.generate(**enc, max_new_tokens=args["new_tokens"], num_beams=1, do_sample=False)
            outs.append(tok.decode(out[0], skip_special_tokens=True).strip())
    return {"import_s": t1 - t0, "load_s": t2 - t1, "compute_s": time.perf_counter() - t2, "outputs": outs}


def translate_tfx(args: dict) -> dict:
    return _tfx_run("translate", args["sentences"], args["model"], {"src": "en", "tgt": "fr", "max_new_tokens": args["new_tokens"], "num_beams": 1})


# ---- start-up ------------------------------------------------------------------------------------------


def bare_load(args: dict) -> dict:
    """What a bare script spends before it can generate: import transformers, load tokenizer and model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _snapshot(args["cache"], args["model"])
    AutoTokenizer.from_pretrained(path)
    AutoModelForCausalLM.from_pretrained(path)
    return {"ready_s": time.perf_counter() - T_START}


def bare_first_token(args: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _snapshot(args["cache"], args["model"])
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.inference_mode():
        model.generate(**tok(args["prompt"], return_tensors="pt"), max_new_tokens=1, do_sample=False, pad_token_id=tok.eos_token_id)
    return {"ready_s": time.perf_counter() - T_START}


def load_time(args: dict) -> dict:
    """From `torch` imported to a model ready to run: tfx's loader (its fast path where one applies) or
    transformers' Auto classes (their import included: a script needs them)."""
    import torch  # noqa: F401 - excluded: both sides need it

    t0 = time.perf_counter()
    if args["which"] == "tfx":
        from tfx import loading

        loaded = loading.load(loading.prepare(args["model"], args["task"]), "cpu", torch.float32)
        fast = getattr(loaded, "fast", None) is not None
    else:
        import transformers

        from tfx.registry import auto_class

        family = {"generate": "decoder-only", "fill-mask": "encoder-only", "translate": "encoder-decoder"}[args["task"]]
        auto = getattr(transformers, auto_class(args["task"], family))
        path = _snapshot(args["cache"], args["model"])
        transformers.AutoTokenizer.from_pretrained(path)
        auto.from_pretrained(path)
        fast = False
    return {"load_s": time.perf_counter() - t0, "fast": fast}


def multi(args: dict) -> dict:
    """Several modes in one process (--smoke only: start-up then counts once for all of them)."""
    return {"results": [MODES[mode](sub) for mode, sub in args["modes"]]}


MODES = {f.__name__: f for f in (hw, gen_seed_loop, gen_batched, gen_tfx, decode_rate, fill_pipeline, fill_tfx, translate_loop, translate_tfx, bare_load, bare_first_token, load_time, multi)}

if __name__ == "__main__":
    mode, raw = sys.argv[1], sys.argv[2]
    if raw.startswith("@"):
        raw = open(raw[1:], encoding="utf-8").read()
    result = MODES[mode](json.loads(raw))
    sys.stdout.write(json.dumps(result) + "\n")
