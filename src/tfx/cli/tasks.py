"""The task commands (generate, fill-mask, translate, summarize): each builds a RunSpec from argv and
hands it to the engine the options pick. Nothing heavy is imported here."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from tfx.cli import options as o
from tfx.cli.common import execute, setup
from tfx.registry import DEFAULT_FILL_MASK_MODEL, DEFAULT_GENERATE_MODEL, DEFAULT_SUMMARIZE_MODEL

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




def register(app: typer.Typer) -> None:
    app.command(epilog=GENERATE_EXAMPLES)(generate)
    app.command("fill-mask", epilog=FILL_MASK_EXAMPLES)(fill_mask)
    app.command(epilog=TRANSLATE_EXAMPLES)(translate)
    app.command(epilog=SUMMARIZE_EXAMPLES)(summarize)


def run_task(task: str, texts, settings_of, common: dict, stream: bool | None = None) -> None:
    """Build the spec (checked once, before any model), then run it on the engine the options pick."""

    def body() -> int:
        setup(common.pop("offline"), common["quiet"], common["verbose"])
        from tfx import engines, spec

        settings = settings_of()
        run = spec.build(task, settings, model=common.pop("model"), **_spec_parts(texts, common, stream))
        if not run.inputs.texts and run.inputs.path is None and sys.stdin.isatty():
            from tfx.errors import UsageError

            raise UsageError("no input.", "Give the text as an argument, pipe lines on stdin, or use --input FILE.")
        return engines.run(run)

    execute(body)


def _spec_parts(texts, c: dict, stream: bool | None) -> dict:
    from tfx import spec

    engine = "remote" if c["server"] else c["engine"]
    return dict(
        revision=c["revision"], device=c["device"], dtype=c["dtype"], trust_remote_code=c["trust_remote_code"],
        inputs=spec.Inputs(tuple(texts or ()), c["input_path"], c["input_format"]),
        output=spec.Output(c["fmt"], stream, c["output"], c["output_format"]),
        engine=spec.Engine(engine, c["server"], c["ray_address"], c["replicas"], c["gpus_per_replica"]),
        batch_size=c["batch_size"], keep_going=c["keep_going"], quiet=c["quiet"], verbose=c["verbose"],
    )  # fmt: skip


def _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline,
            trust_remote_code, server, engine, output, output_format, ray_address, replicas, gpus_per_replica) -> dict:
    return dict(
        model=model, revision=revision, device=device, dtype=dtype, fmt=fmt, input_path=input_file,
        input_format=input_format, batch_size=batch_size, quiet=quiet, verbose=verbose, keep_going=keep_going,
        offline=offline, trust_remote_code=trust_remote_code, server=server, engine=engine, output=output,
        output_format=output_format, ray_address=ray_address, replicas=replicas, gpus_per_replica=gpus_per_replica,
    )  # fmt: skip


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
    from tfx.spec import GenerateSettings

    settings = lambda: GenerateSettings(  # noqa: E731 - built inside the catch point: a bad value is a one-line error
        max_new_tokens=max_new_tokens, max_length=max_length, num_return_sequences=num_return_sequences,
        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
        repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size, seed=seed,
        continuation_only=continuation_only, no_truncate=no_truncate,
    )  # fmt: skip
    run_task("generate", texts, settings, _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server, engine, output, output_format, ray_address, replicas, gpus_per_replica), stream)


generate.__doc__ = f"Continue each prompt with a decoder-only model (default: {DEFAULT_GENERATE_MODEL}); prints prompt + continuation."


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
    from tfx.spec import FillMaskSettings

    settings = lambda: FillMaskSettings(top_k=top_k, targets=targets, no_truncate=no_truncate)  # noqa: E731
    run_task("fill-mask", texts, settings, _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server, engine, output, output_format, ray_address, replicas, gpus_per_replica))


fill_mask.__doc__ = (
    f"Fill in [MASK] with an encoder-only model (default: {DEFAULT_FILL_MASK_MODEL}); prints the completed sentence. "
    "[MASK] works for every model; several masks are each filled with their best prediction."
)


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
    from tfx.spec import TranslateSettings

    settings = lambda: TranslateSettings(src=src, tgt=to, max_new_tokens=max_new_tokens, num_beams=num_beams, no_truncate=no_truncate)  # noqa: E731
    run_task("translate", texts, settings, _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server, engine, output, output_format, ray_address, replicas, gpus_per_replica))


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
    from tfx.spec import SummarizeSettings

    settings = lambda: SummarizeSettings(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams, no_truncate=no_truncate)  # noqa: E731
    run_task("summarize", texts, settings, _common(model, revision, device, dtype, fmt, input_file, input_format, batch_size, quiet, verbose, keep_going, offline, trust_remote_code, server, engine, output, output_format, ray_address, replicas, gpus_per_replica))


summarize.__doc__ = f"Summarise each text with an encoder-decoder model (default: {DEFAULT_SUMMARIZE_MODEL}; T5 gets 'summarize: ')."


