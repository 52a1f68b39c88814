"""tfx compare: the same input and options through several models, side by side."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any, Optional

import typer

from tfx.cli import options as o
from tfx.cli.common import check_format as _check_format, execute as _execute, setup as _setup

from tfx.io import print_table, write_json_line

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
    "qa": {"context", "top_k"},
    "embed": {"normalize", "dimensions"},
    "rank": {"query", "cross_encoder"},
    "classify": {"top_k", "labels", "hypothesis_template", "multi_label"},
    "ner": {"aggregate"},
}
OPTION_FLAGS = {"src": "--from", "tgt": "--to", "do_sample": "--do-sample/--greedy", "normalize": "--normalize/--no-normalize"}


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
    context: Annotated[Optional[str], typer.Option("--context", "-c", help="qa: the text to answer from (a file, or the text itself).", show_default=False)] = None,
    query: Annotated[Optional[str], typer.Option("--query", help="rank: what each input is scored against.", show_default=False)] = None,
    cross_encoder: Annotated[bool, typer.Option("--cross-encoder", help="rank: score with a cross-encoder.")] = False,
    normalize: Annotated[Optional[bool], typer.Option("--normalize/--no-normalize", help="embed: unit-length vectors (default: the model's own).", show_default=False)] = None,
    dimensions: Annotated[Optional[int], typer.Option("--dimensions", help="embed: keep the first N dimensions.", show_default=False)] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help="classify: comma-separated labels, zero-shot through an NLI model.", show_default=False)] = None,
    hypothesis_template: Annotated[Optional[str], typer.Option("--hypothesis-template", help="classify --labels: the hypothesis each label is put into.", show_default=False)] = None,
    multi_label: Annotated[bool, typer.Option("--multi-label", help="classify --labels: score each label on its own.")] = False,
    aggregate: Annotated[Optional[str], typer.Option("--aggregate", help="ner: simple, first, average, max or none.", show_default=False)] = None,
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
        context=context, query=query, cross_encoder=cross_encoder or None, normalize=normalize, dimensions=dimensions,
        labels=labels, hypothesis_template=hypothesis_template, multi_label=multi_label or None, aggregate=aggregate,
    )  # fmt: skip

    def body() -> int:
        _setup(offline, quiet, verbose)
        _check_format(fmt, ("text", "jsonl"))
        from tfx import registry

        name = registry.task_info(task).name
        if given["context"] is not None:
            from tfx.cli.tasks import read_context

            given["context"] = read_context(given["context"])
        settings = _settings(name, {k: v for k, v in given.items() if v is not None})
        rows = run_comparison(name, texts, list(models or []), settings, device, dtype, trust_remote_code, verbose, fmt)
        if fmt == "text":
            several = len(texts) > 1
            columns = (["input"] if several else []) + ["model", "output", "seconds"]
            rows.sort(key=lambda r: r["index"])  # input by input, models in the order given
            print_table(columns, [([r["input"]] if several else []) + [r["model"], r["shown"], f"{r['seconds']:.2f}"] for r in rows])
        return 0

    _execute(body)


def _settings(task: str, given: dict[str, Any]):
    """The task's settings from compare's options; an option of another task is a usage error."""
    from tfx.errors import UsageError
    from tfx.spec import SETTINGS

    for key in given:
        if key not in COMPARE_OPTIONS[task]:
            flag = OPTION_FLAGS.get(key, "--" + key.replace("_", "-"))
            users = [t for t, keys in COMPARE_OPTIONS.items() if key in keys]
            raise UsageError(f"{flag} does not apply to {task}.", f"It is an option of {' and '.join(users)}.")
    settings = SETTINGS[task].from_params(given)
    settings.validate()
    return settings


def run_comparison(task, texts, names, settings, device, dtype, trust_remote_code, verbose, fmt) -> list[dict[str, Any]]:
    """Each model in turn: prepare all first (so a bad name fails before any model loads), then load, run
    every input through the pipeline, free it. jsonl rows are written as each model finishes."""
    import gc

    from tfx import loading, pipeline, registry, spec
    from tfx.hub import say
    from tfx.errors import TfxError, UsageError
    from tfx.tasks import open_task

    if not names:
        example = " ".join(f"-m {m}" for m in registry.task_info(task).suggested)
        raise UsageError("compare needs the models to compare.", f"Name them with -m, e.g. {example}.")
    if any(not t.strip() for t in texts):
        raise UsageError("the input text is empty.", "Pass some text.")
    prepared = [loading.prepare(n, task, settings) for n in names]
    rows = []
    for p in prepared:
        if sys.stderr.isatty():
            say(f"loading {p.name}")
        started = time.monotonic()
        run = spec.build(task, settings, model=p.name, device=device, dtype=dtype, trust_remote_code=trust_remote_code, verbose=verbose)
        runner = open_task(run, prepared=p)
        load_seconds = time.monotonic() - started
        for index, text in enumerate(texts):
            started = time.monotonic()
            (done,) = pipeline.run_texts(runner, [text])
            if done.error is not None:
                raise TfxError(f"{p.name}: {done.error}.", "Fix the input.")
            result = done.result
            row = {"input": text, "model": p.name, **result.record(), "seconds": round(time.monotonic() - started, 4), "load_seconds": round(load_seconds, 4)}
            if fmt == "jsonl":
                write_json_line(row)
            rows.append({**row, "shown": result.text(), "index": index})
        runner.close()
        device_name = runner.device
        del runner
        gc.collect()  # one model in memory at a time
        if device_name.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
    return rows
