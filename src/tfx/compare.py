"""tfx compare: the same input and options through several models, side by side."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any, Optional

import typer

from tfx import options as o
from tfx.hubcmds import _check_format, _execute, _say, _setup, _task_name, print_table

COMPARE_EXAMPLES = """Examples:

  tfx compare generate "Once upon a time" -m gpt2 -m distilgpt2

  tfx compare translate "The weather is beautiful today." --to de -m t5-small -m Helsinki-NLP/opus-mt-en-de

  tfx compare fill-mask "Paris is the [MASK] of France." -m bert-base-uncased -m roberta-base --format jsonl
"""

# Which compare options each task takes: the same ones its own command has.
COMPARE_OPTIONS = {
    "generate": {"max_new_tokens", "min_new_tokens", "num_beams", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "seed", "continuation_only"},
    "fill-mask": {"top_k", "targets"},
    "translate": {"src", "tgt", "max_new_tokens", "min_new_tokens", "num_beams"},
    "summarize": {"max_new_tokens", "min_new_tokens", "num_beams"},
}
OPTION_FLAGS = {"src": "--from", "tgt": "--to", "do_sample": "--do-sample/--greedy"}


def compare(
    task: Annotated[str, typer.Argument(help="generate, fill-mask, translate or summarize.", show_default=False)],
    texts: Annotated[list[str], typer.Argument(help="The input (several inputs: each goes through every model).", show_default=False)],
    models: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A model to compare; repeat for each.", show_default=False)] = None,
    to: Annotated[Optional[str], typer.Option("--to", "-t", help="translate: target language (ISO code).", show_default=False)] = None,
    src: Annotated[Optional[str], typer.Option("--from", help="translate: source language (default en).", show_default=False)] = None,
    max_new_tokens: o.MaxNewTokens = None,
    min_new_tokens: o.MinNewTokens = None,
    num_beams: o.NumBeams = None,
    do_sample: Annotated[Optional[bool], typer.Option("--do-sample/--greedy", help="generate: sample instead of the model's default decoding.", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option(help="generate: sampling temperature.", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="generate: sample from the k likeliest tokens; fill-mask: list k candidates.", show_default=False)] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="generate: nucleus sampling mass.", show_default=False)] = None,
    repetition_penalty: Annotated[Optional[float], typer.Option(help="generate: penalty for repeated tokens.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="generate: random seed, the same for every model.", show_default=False)] = None,
    continuation_only: Annotated[bool, typer.Option("--continuation-only", help="generate: show only the new text.")] = False,
    targets: Annotated[Optional[str], typer.Option("--targets", help="fill-mask: comma-separated candidate words.", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (a table: model, output, seconds) or jsonl (one object per model and input).")] = "text",
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Run the same input, with the same options, through several models and show their outputs side by side."""
    given = dict(
        src=src, tgt=to, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams,
        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
        seed=seed, continuation_only=continuation_only or None, targets=targets,
    )  # fmt: skip

    def body() -> int:
        _setup(offline, quiet, verbose)
        _check_format(fmt, ("text", "jsonl"))
        name = _task_name(task)
        params = _compare_params(name, {k: v for k, v in given.items() if v is not None})
        rows = run_comparison(name, texts, list(models or []), params, device, dtype, trust_remote_code, verbose, fmt)
        if fmt == "text":
            several = len(texts) > 1
            columns = (["input"] if several else []) + ["model", "output", "seconds"]
            rows.sort(key=lambda r: r["index"])  # input by input, models in the order given
            print_table(columns, [([r["input"]] if several else []) + [r["model"], r["shown"], f"{r['seconds']:.2f}"] for r in rows])
        return 0

    _execute(body)


def _compare_params(task: str, given: dict[str, Any]) -> dict[str, Any]:
    from tfx.errors import UsageError

    for key in given:
        if key not in COMPARE_OPTIONS[task]:
            flag = OPTION_FLAGS.get(key, "--" + key.replace("_", "-"))
            users = [t for t, keys in COMPARE_OPTIONS.items() if key in keys]
            raise UsageError(f"{flag} does not apply to {task}.", f"It is an option of {' and '.join(users)}.")
    if task == "translate":
        if not given.get("tgt"):
            raise UsageError("translate needs a target language.", "Add --to, e.g. --to fr.")
        given = {**given, "src": (given.get("src") or "en").lower(), "tgt": given["tgt"].lower()}
    return given


def run_comparison(task, texts, names, params, device, dtype, trust_remote_code, verbose, fmt) -> list[dict[str, Any]]:
    """Each model in turn: resolve (all first, so a bad name fails before any model loads), load, run every
    input, free it. jsonl rows are written as each model finishes."""
    import gc

    from tfx import devices, hub, loading, registry
    from tfx.errors import RecordError, TfxError, UsageError
    from tfx.tasks import make_task, text_renderer
    from tfx.tasks.base import validate_generation

    if not names:
        example = " ".join(f"-m {m}" for m in registry.SUGGESTED[task])
        raise UsageError("compare needs the models to compare.", f"Name them with -m, e.g. {example}.")
    if any(not t.strip() for t in texts):
        raise UsageError("the input text is empty.", "Pass some text.")
    generative = task in ("generate", "translate", "summarize")
    if generative:
        validate_generation(params)
    resolved = [hub.resolve(n) for n in names]
    for r in resolved:
        loading.check_task(r, task, loading.read_json(r.path / "config.json"))
    device_name = devices.pick_device(device)
    torch_dtype = devices.pick_dtype(dtype, device_name)
    shown_text = text_renderer(task, params)
    rows = []
    for r in resolved:
        if sys.stderr.isatty():
            _say(f"loading {r.name}")
        started = time.monotonic()
        loaded = loading.load(r, task, device_name, torch_dtype, trust_remote_code, verbose)
        load_seconds = time.monotonic() - started
        if generative:
            validate_generation(params, loaded.generation_defaults)
        runner = make_task(task, loaded, dict(params))
        for index, text in enumerate(texts):
            try:
                runner.check(text)
            except RecordError as exc:
                raise TfxError(f"{r.name}: {exc}.", "Fix the input.") from None
            started = time.monotonic()
            result = runner.run([text])[0]
            row = {"input": text, "model": r.name, **result, "seconds": round(time.monotonic() - started, 4), "load_seconds": round(load_seconds, 4)}
            if fmt == "jsonl":
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            rows.append({**row, "shown": shown_text(result), "index": index})
        del runner, loaded
        gc.collect()  # one model in memory at a time
        if device_name.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
    return rows


# ---- tfx env ---------------------------------------------------------------------------------------------
