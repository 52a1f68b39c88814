"""The tfx command line: one thin function per command. Nothing heavy is imported here, so `tfx --help`
answers at once; torch and transformers load only inside the command that runs a model."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated, Optional

import typer

from tfx import __version__
from tfx import options as o
from tfx.registry import DEFAULT_FILL_MASK_MODEL, DEFAULT_GENERATE_MODEL, DEFAULT_SUMMARIZE_MODEL

app = typer.Typer(
    name="tfx",
    help="Hugging Face Transformer models from the shell: generate, fill-mask, translate, summarize.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

GENERATE_EXAMPLES = """Examples:

  tfx generate "Once upon a time"

  tfx generate -m distilgpt2 --max-new-tokens 40 --do-sample --temperature 0.8 --top-p 0.95 --seed 42 "Once upon a time"

  tfx generate --format jsonl < prompts.txt > out.jsonl
"""
FILL_MASK_EXAMPLES = """Examples:

  tfx fill-mask "Artificial intelligence is the [MASK] of the future."

  tfx fill-mask --top-k 5 "Paris is the [MASK] of France."

  tfx fill-mask -m roberta-base --targets capital,city "Paris is the [MASK] of France."
"""
TRANSLATE_EXAMPLES = """Examples:

  tfx translate --to fr "The weather is beautiful today."

  tfx translate --from en --to es < lines.txt > lines.es.txt
"""
SUMMARIZE_EXAMPLES = """Examples:

  tfx summarize "$(cat article.txt)"

  tfx summarize -m t5-small --max-new-tokens 60 --input articles.txt
"""


def version_callback(value: bool) -> None:
    if value:
        print(f"tfx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version and exit.")] = None,
) -> None:
    """Hugging Face Transformer models from the shell."""


def execute(body: Callable[[], int | None]) -> None:
    """The one catch point: known errors become one line on stderr that names the fix; Ctrl-C exits 130
    and a closed stdout (| head) ends quietly; everything already written stays written."""
    from tfx.errors import explain

    code = 0
    try:
        code = body() or 0
    except KeyboardInterrupt:
        _flush_quietly()
        print("tfx: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = _stdout_gone()
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to a message, or shown in full with TFX_DEBUG=1
        if os.environ.get("TFX_DEBUG") == "1":
            raise
        error = explain(exc)
        if error is None:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"tfx: error: {type(exc).__name__}: {first} (TFX_DEBUG=1 shows the traceback)", file=sys.stderr)
            code = 1
        else:
            print(f"tfx: error: {error}", file=sys.stderr)
            code = error.exit_code
        _flush_quietly()
    raise typer.Exit(code)


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError, OSError):
        _stdout_gone()


def _stdout_gone() -> int:
    """The reader went away: point stdout at /dev/null so the final flush at exit cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def run_task(task: str, texts: list[str] | None, common: dict, params: dict) -> None:
    def body() -> int:
        if common.pop("offline"):
            os.environ["HF_HUB_OFFLINE"] = "1"
        from tfx import hub

        hub.configure_env()
        setup_logging(common["quiet"], common["verbose"])
        from tfx.runner import RunOptions, run

        return run(RunOptions(task=task, texts=list(texts or []), params=params, **common))

    execute(body)


def setup_logging(quiet: bool, verbose: bool) -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tfx: %(levelname)s: %(message)s" if verbose else "tfx: warning: %(message)s"))
    logger = logging.getLogger("tfx")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)


def _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server=None) -> dict:
    return dict(
        model=model, revision=revision, device=device, dtype=dtype, fmt=fmt, input_path=input_file,
        input_format=input_format, batch_size=batch_size, quiet=quiet, verbose=verbose, keep_going=keep_going,
        offline=offline, trust_remote_code=trust_remote_code, server=server,
    )  # fmt: skip


def _engine(engine, output, output_format, ray_address, replicas, gpus_per_replica) -> dict:
    return dict(
        engine=engine, output=output, output_format=output_format, ray_address=ray_address,
        replicas=replicas, gpus_per_replica=gpus_per_replica,
    )  # fmt: skip


@app.command(epilog=GENERATE_EXAMPLES)
def generate(
    texts: o.Texts = None,
    model: o.Model = None,
    max_new_tokens: o.MaxNewTokens = None,
    max_length: o.MaxLength = None,
    num_return_sequences: Annotated[Optional[int], typer.Option("--num-return-sequences", "-n", help="Sequences per prompt (they stay in one record).", show_default=False)] = None,
    do_sample: Annotated[Optional[bool], typer.Option("--do-sample/--greedy", help="Sample instead of the model's default decoding.", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature (> 0).", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample from the k most likely tokens.", show_default=False)] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling mass, in (0, 1].", show_default=False)] = None,
    num_beams: o.NumBeams = None,
    repetition_penalty: Annotated[Optional[float], typer.Option(help="Penalty for repeated tokens (1.0: none).", show_default=False)] = None,
    no_repeat_ngram_size: Annotated[Optional[int], typer.Option(help="Never repeat an n-gram of this size.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed, for reproducible sampling.", show_default=False)] = None,
    continuation_only: Annotated[bool, typer.Option("--continuation-only", help="Print only the new text, not the prompt.")] = False,
    stream: Annotated[Optional[bool], typer.Option("--stream/--no-stream", help="Show tokens as they are made (default: for one prompt on a terminal).", show_default=False)] = None,
    no_truncate: o.NoTruncate = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    fmt: o.Format = "text",
    input_file: o.InputFile = None,
    input_format: o.InputFormat = "text",
    batch_size: o.BatchSize = None,
    keep_going: o.KeepGoing = False,
    revision: o.Revision = None,
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
    server: o.Server = None,
    engine: o.Engine = "local",
    output: o.Output = None,
    output_format: o.OutputFormat = "jsonl",
    ray_address: o.RayAddress = None,
    replicas: o.Replicas = None,
    gpus_per_replica: o.GpusPerReplica = 0.0,
) -> None:
    f"""Continue each prompt with a decoder-only model (default: {DEFAULT_GENERATE_MODEL}); prints prompt + continuation."""
    params = dict(
        max_new_tokens=max_new_tokens, max_length=max_length, num_return_sequences=num_return_sequences,
        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
        repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size, seed=seed,
        continuation_only=continuation_only, no_truncate=no_truncate,
    )  # fmt: skip
    common = _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server)
    common.update(_engine(engine, output, output_format, ray_address, replicas, gpus_per_replica))
    common["stream"] = stream
    run_task("generate", texts, common, params)


generate.__doc__ = f"Continue each prompt with a decoder-only model (default: {DEFAULT_GENERATE_MODEL}); prints prompt + continuation."


@app.command("fill-mask", epilog=FILL_MASK_EXAMPLES)
def fill_mask(
    texts: o.Texts = None,
    model: o.Model = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="List this many candidates per mask, with scores.", show_default=False)] = None,
    targets: Annotated[Optional[str], typer.Option("--targets", help="Comma-separated words: only these are candidates.", show_default=False)] = None,
    no_truncate: o.NoTruncate = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    fmt: o.Format = "text",
    input_file: o.InputFile = None,
    input_format: o.InputFormat = "text",
    batch_size: o.BatchSize = None,
    keep_going: o.KeepGoing = False,
    revision: o.Revision = None,
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
    server: o.Server = None,
    engine: o.Engine = "local",
    output: o.Output = None,
    output_format: o.OutputFormat = "jsonl",
    ray_address: o.RayAddress = None,
    replicas: o.Replicas = None,
    gpus_per_replica: o.GpusPerReplica = 0.0,
) -> None:
    params = dict(top_k=top_k, targets=targets, no_truncate=no_truncate)
    common = _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server)
    common.update(_engine(engine, output, output_format, ray_address, replicas, gpus_per_replica))
    run_task("fill-mask", texts, common, params)


fill_mask.__doc__ = (
    f"Fill in [MASK] with an encoder-only model (default: {DEFAULT_FILL_MASK_MODEL}); prints the completed sentence. "
    "[MASK] works for every model; several masks are each filled with their best prediction."
)


@app.command(epilog=TRANSLATE_EXAMPLES)
def translate(
    texts: o.Texts = None,
    to: Annotated[Optional[str], typer.Option("--to", "-t", help="Target language, an ISO code (fr, de, es, ...). Required.", show_default=False)] = None,
    src: Annotated[str, typer.Option("--from", help="Source language, an ISO code.")] = "en",
    model: o.Model = None,
    max_new_tokens: o.MaxNewTokens = None,
    num_beams: o.NumBeams = None,
    no_truncate: o.NoTruncate = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    fmt: o.Format = "text",
    input_file: o.InputFile = None,
    input_format: o.InputFormat = "text",
    batch_size: o.BatchSize = None,
    keep_going: o.KeepGoing = False,
    revision: o.Revision = None,
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
    server: o.Server = None,
    engine: o.Engine = "local",
    output: o.Output = None,
    output_format: o.OutputFormat = "jsonl",
    ray_address: o.RayAddress = None,
    replicas: o.Replicas = None,
    gpus_per_replica: o.GpusPerReplica = 0.0,
) -> None:
    """Translate each text (default model: t5-small for en->fr/de/ro, else Helsinki-NLP/opus-mt-{from}-{to})."""

    def missing_to() -> int:
        from tfx.errors import UsageError

        raise UsageError("translate needs a target language.", "Add --to, e.g. --to fr.")

    if not to:
        execute(missing_to)
    params = dict(src=src.lower(), tgt=to.lower(), max_new_tokens=max_new_tokens, num_beams=num_beams, no_truncate=no_truncate)
    common = _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server)
    common.update(_engine(engine, output, output_format, ray_address, replicas, gpus_per_replica))
    run_task("translate", texts, common, params)


@app.command(epilog=SUMMARIZE_EXAMPLES)
def summarize(
    texts: o.Texts = None,
    model: o.Model = None,
    max_new_tokens: o.MaxNewTokens = None,
    min_new_tokens: o.MinNewTokens = None,
    num_beams: o.NumBeams = None,
    no_truncate: o.NoTruncate = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    fmt: o.Format = "text",
    input_file: o.InputFile = None,
    input_format: o.InputFormat = "text",
    batch_size: o.BatchSize = None,
    keep_going: o.KeepGoing = False,
    revision: o.Revision = None,
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
    server: o.Server = None,
    engine: o.Engine = "local",
    output: o.Output = None,
    output_format: o.OutputFormat = "jsonl",
    ray_address: o.RayAddress = None,
    replicas: o.Replicas = None,
    gpus_per_replica: o.GpusPerReplica = 0.0,
) -> None:
    params = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams, no_truncate=no_truncate)
    common = _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server)
    common.update(_engine(engine, output, output_format, ray_address, replicas, gpus_per_replica))
    run_task("summarize", texts, common, params)


summarize.__doc__ = f"Summarise each text with an encoder-decoder model (default: {DEFAULT_SUMMARIZE_MODEL}; T5 gets 'summarize: ')."


# Commands that do not run a model live in their own modules; registering them imports nothing heavy.
from tfx import hubcmds  # noqa: E402
from tfx.serve import command as serve_command  # noqa: E402

hubcmds.register(app)
serve_command.register(app)


def main() -> None:
    from tfx.devices import prepare_env

    prepare_env()  # before anything imports torch
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BrokenPipeError:
        code = _stdout_gone()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError, OSError):
        code = code or _stdout_gone()
    sys.stderr.flush()
    # os._exit, not sys.exit: the stdin reader thread may be blocked in a read, and a normal interpreter
    # shutdown would then abort on the stdin lock (SIGABRT) instead of exiting with our status.
    os._exit(code)


if __name__ == "__main__":
    main()
