"""tfx compare: the same input and options through several models, side by side."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any, Optional

import typer

from tfx.cli import completion, options as o
from tfx.cli.derive import compare_parameters, with_settings
from tfx.cli.common import check_format as _check_format, execute as _execute, setup as _setup

from tfx.io import print_table, write_json_line

COMPARE_EXAMPLES = """Examples:

  tfx compare generate "Once upon a time" -m gpt2 -m distilgpt2

  tfx compare translate "The weather is beautiful today." --to de -m t5-small -m Helsinki-NLP/opus-mt-en-de

  tfx compare fill-mask "Paris is the [MASK] of France." -m bert-base-uncased -m roberta-base --format jsonl
"""

@with_settings(compare_parameters())
def compare(
    task: Annotated[str, typer.Argument(help="generate, fill-mask, translate, summarize, classify, ner, qa, embed or rank.", show_default=False, metavar="TASK", autocompletion=completion.complete_task)],
    texts: Annotated[list[str], typer.Argument(help="The input (several inputs: each goes through every model).", show_default=False, metavar="TEXT")],
    models: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A model to compare; repeat for each.", show_default=False, metavar="MODEL")] = None,
    context: Annotated[Optional[str], typer.Option("--context", "-c", help="qa: the text to answer from (@FILE, or a file's path, reads the file).", show_default=False, metavar="TEXT")] = None,
    query: Annotated[Optional[str], typer.Option("--query", help="rank: what each input is scored against.", show_default=False, metavar="TEXT")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (a table: model, output, seconds) or jsonl (one object per model and input).", metavar="FORMAT")] = "text",
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
    given: dict = None,  # type: ignore[assignment]
) -> None:
    """Run the same input, with the same options, through several models and show their outputs side by side."""
    given = {**given, "context": context, "query": query}

    def body() -> int:
        _setup(offline, quiet, verbose)
        _check_format(fmt, ("text", "jsonl"))
        from tfx import registry

        name = registry.task_info(task).name
        if given["context"] is not None:
            from tfx.cli.tasks import read_context

            given["context"] = read_context(given["context"])
        settings = _settings(name, {k: v for k, v in given.items() if v is not None and v is not False})
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
    from tfx.cli.derive import build_settings, flag_of
    from tfx.errors import UsageError
    from tfx.settings import SETTINGS, schema

    own = {f.name for f in schema(SETTINGS[task])}
    for key in given:
        if key not in own:
            users = [t for t, cls in SETTINGS.items() if any(f.name == key for f in schema(cls))]
            flag = flag_of(users[0], key) if users else "--" + key.replace("_", "-")
            raise UsageError(f"{flag} does not apply to {task}.", f"It is an option of {' and '.join(users)}.")
    settings = build_settings(task, given)
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
