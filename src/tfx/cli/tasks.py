"""The task commands (generate, fill-mask, translate, summarize, classify, ner, qa, embed, rank): each
declares its own options (the shared ones come from options.task_command), builds a RunSpec from argv and
hands it to the engine the options pick. Nothing heavy is imported here."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from tfx.cli import options as o
from tfx.cli.common import execute, setup
from tfx.cli.derive import build_settings, escape
from tfx.cli.options import IO_PANEL, task_command
from tfx.settings import TASK_PANEL
from tfx.registry import CROSS_ENCODER_MODEL, DEFAULT_FILL_MASK_MODEL, DEFAULT_GENERATE_MODEL, DEFAULT_SUMMARIZE_MODEL, ZERO_SHOT_MODEL, task_info

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
CLASSIFY_EXAMPLES = """Examples:

  tfx classify "I loved every minute of it."

  tfx classify --top-k 3 -m j-hartmann/emotion-english-distilroberta-base < tweets.txt

  tfx classify --labels sports,politics,cooking "The chef won the election."

  tfx classify --labels urgent,billing,spam --multi-label --format jsonl < tickets.jsonl
"""
NER_EXAMPLES = """Examples:

  tfx ner "Hugging Face is based in New York City."

  tfx ner --format jsonl < news.txt
"""
QA_EXAMPLES = """Examples:

  tfx qa --context-file article.txt "Where is Hugging Face based?"

  tfx qa --context "Hugging Face is based in New York City." "Where is Hugging Face based?"

  jq -c '{question: .q, context: .passage}' set.jsonl | tfx qa --input-format jsonl --format jsonl
"""
EMBED_EXAMPLES = """Examples:

  tfx embed < sentences.txt > vectors.jsonl

  tfx embed --format tsv "A sentence to embed."
"""
RANK_EXAMPLES = """Examples:

  tfx rank "how do I reset my password" < faq.txt

  tfx rank --cross-encoder --top-k 5 "how do I reset my password" < faq.txt
"""


# `tfx --help` groups the task commands by family, in the order of the seed's table.
ENCODER_PANEL = "Encoder-only models (understanding)"
DECODER_PANEL = "Decoder-only models (generation)"
SEQ2SEQ_PANEL = "Encoder-decoder models (sequence to sequence)"


def register(app: typer.Typer) -> None:
    app.command("fill-mask", epilog=FILL_MASK_EXAMPLES, rich_help_panel=ENCODER_PANEL)(fill_mask)
    app.command(epilog=CLASSIFY_EXAMPLES, rich_help_panel=ENCODER_PANEL)(classify)
    app.command(epilog=NER_EXAMPLES, rich_help_panel=ENCODER_PANEL)(ner)
    app.command(epilog=QA_EXAMPLES, rich_help_panel=ENCODER_PANEL)(qa)
    app.command(epilog=EMBED_EXAMPLES, rich_help_panel=ENCODER_PANEL)(embed)
    app.command(epilog=RANK_EXAMPLES, rich_help_panel=ENCODER_PANEL)(rank)
    app.command(epilog=GENERATE_EXAMPLES, rich_help_panel=DECODER_PANEL)(generate)
    app.command(epilog=TRANSLATE_EXAMPLES, rich_help_panel=SEQ2SEQ_PANEL)(translate)
    app.command(epilog=SUMMARIZE_EXAMPLES, rich_help_panel=SEQ2SEQ_PANEL)(summarize)


def run_task(task: str, texts, values: dict, common: dict, stream: bool | None = None, settings_of=None) -> None:
    """Build the settings and the spec (checked once, before any model), then run it on the engine the
    options pick. settings_of: the settings from `values` when a command needs more than build_settings."""

    def body() -> int:
        setup(common.pop("offline"), common["quiet"], common["verbose"])
        from tfx import engines, spec

        settings = settings_of(values) if settings_of is not None else build_settings(task, values)
        run = spec.build(task, settings, model=common.pop("model"), **_spec_parts(texts, common, stream))
        if not run.inputs.texts and run.inputs.path is None and sys.stdin.isatty():
            from tfx.errors import UsageError

            raise UsageError("no input.", "Give the text as an argument, pipe lines on stdin, or use --input FILE.")
        return engines.run(run)

    execute(body)


def _spec_parts(texts, c: dict, stream: bool | None) -> dict:
    from tfx import spec

    engine, backend = pick_engine(c["engine"], c["backend"])
    engine = "remote" if c["server"] else engine
    return dict(backend=backend, compute_type=c["compute_type"],
        revision=c["revision"], device=c["device"], dtype=c["dtype"], trust_remote_code=c["trust_remote_code"],
        inputs=spec.Inputs(tuple(texts or ()), c["input_file"], input_format(c["input_file"], c["input_format"])),
        output=spec.Output(output_format(c["fmt"]), stream, c["output"], c["output_format"]),
        engine=spec.Engine(engine, c["server"], c["ray_address"], c["replicas"], c["gpus_per_replica"]),
        batch_size=c["batch_size"], keep_going=c["keep_going"], quiet=c["quiet"], verbose=c["verbose"],
    )  # fmt: skip


def pick_engine(engine: str, backend: str | None) -> tuple[str, str]:
    """(where it runs, what computes). --engine ct2|auto, the spelling before --backend, still works for a
    release: it means --backend ct2|auto on the local engine, with a note on stderr."""
    from tfx.errors import UsageError

    if engine in ("ct2", "auto"):
        if backend is not None and backend != engine:
            raise UsageError(f"--engine {engine} and --backend {backend} disagree.", f"Use --backend {backend} alone (--engine is local or ray).")
        import logging

        logging.getLogger("tfx").warning("--engine %s is now --backend %s (--engine says where it runs: local or ray)", engine, engine)
        return "local", engine
    return engine, backend or "transformers"


def input_format(path: str | None, given: str | None) -> str:
    """--input-format, or what the --input file's extension says (.jsonl / .ndjson: jsonl), else text."""
    if given is not None:
        return "jsonl" if given == "json" else given
    if path and path.lower().endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if path and path.lower().endswith(".tsv"):
        return "tsv"
    return "text"


def output_format(fmt: str) -> str:
    """jsonl is the name of the one-JSON-object-per-record format; json is accepted as the same (the hub
    commands' word for their JSON output)."""
    return "jsonl" if fmt == "json" else fmt


STREAM_HELP = "Show tokens as they are made (default: for one prompt on a terminal)."
Stream = Annotated[Optional[bool], typer.Option("--stream/--no-stream", help=STREAM_HELP, show_default=False, rich_help_panel=IO_PANEL, metavar="")]


@task_command("generate")
def generate(texts: o.Texts = None, stream: Stream = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    run_task("generate", texts, values, common, stream)


generate.__doc__ = f"Continue each prompt with a decoder-only model (default: {DEFAULT_GENERATE_MODEL}); prints prompt + continuation."


@task_command("fill-mask")
def fill_mask(texts: o.Texts = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    run_task("fill-mask", texts, values, common)


fill_mask.__doc__ = escape(
    f"Fill in [MASK] with an encoder-only model (default: {DEFAULT_FILL_MASK_MODEL}); prints the completed sentence. "
    "[MASK] works for every model; several masks are each filled with their best prediction."
)


@task_command("translate")
def translate(texts: o.Texts = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    """Translate each text (default model: t5-small for en->fr/de/ro, else Helsinki-NLP/opus-mt-{from}-{to}), sentence by sentence."""
    run_task("translate", texts, values, common)


@task_command("summarize")
def summarize(texts: o.Texts = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    run_task("summarize", texts, values, common)


summarize.__doc__ = f"Summarise each text with an encoder-decoder model (default: {DEFAULT_SUMMARIZE_MODEL}; T5 gets 'summarize: ')."


@task_command("classify")
def classify(texts: o.Texts = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    run_task("classify", texts, values, common)


classify.__doc__ = (
    f"Label each text with a fine-tuned encoder classifier (default: {task_info('classify').default_model}); prints LABEL<TAB>score. "
    f"With --labels: zero-shot through an NLI model (default: {ZERO_SHOT_MODEL})."
)


@task_command("ner")
def ner(texts: o.Texts = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    run_task("ner", texts, values, common)


ner.__doc__ = f"Find named entities (people, places, organisations) with a token classifier (default: {task_info('ner').default_model})."

ContextText = Annotated[Optional[str], typer.Option("--context", "-c", help='The text to answer from, itself (jsonl records may carry their own "context"; @FILE reads a file).', show_default=False, rich_help_panel=TASK_PANEL, metavar="TEXT")]
ContextFile = Annotated[Optional[str], typer.Option("--context-file", help="A file whose text is the context.", show_default=False, rich_help_panel=TASK_PANEL, metavar="FILE")]


@task_command("qa")
def qa(texts: o.Texts = None, context: ContextText = None, context_file: ContextFile = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    def settings_of(values: dict):
        return build_settings("qa", {**values, "context": qa_context(context, context_file, common)})

    run_task("qa", texts, values, common, settings_of=settings_of)


qa.__doc__ = f"Answer each question with a span of the context (extractive QA; default: {task_info('qa').default_model})."


def qa_context(context: str | None, context_file: str | None, common: dict) -> str | None:
    """The context every question is asked against: --context TEXT, --context @FILE or --context-file FILE.
    A --context that looks like a file name of a file that does not exist is a typo, not a context; no
    context at all is a usage error unless the records are jsonl (each may carry its own)."""
    import os

    from tfx.cli.derive import read_text_file
    from tfx.errors import UsageError

    if context is not None and context_file is not None:
        raise UsageError("--context and --context-file are two ways to give one context.", "Give only one of them.")
    if context_file is not None:
        return read_text_file(context_file, "--context-file")
    if context is not None and context.startswith("@") and len(context) > 1:
        return read_text_file(context[1:], "--context")
    if context is not None:
        if os.path.isfile(context):  # the old spelling, --context FILE: still read, it was documented
            return read_text_file(context, "--context")
        if looks_like_path(context):
            raise UsageError(f"--context {context}: no such file, and it looks like a file name rather than a context.", "Check the path and use --context-file PATH (or --context @PATH); give text with spaces for a literal context.")
        return context
    records = input_format(common.get("input_file"), common.get("input_format"))
    if records not in ("jsonl", "tsv"):  # jsonl and tsv records may carry their own context
        raise UsageError("qa needs a context to answer from.", 'Add --context-file FILE or --context "TEXT", or give jsonl records with "question" and "context" (--input-format jsonl).')
    return None


def looks_like_path(text: str) -> bool:
    """One word with a file extension or a directory part: article.txt, ./notes, docs/a.md."""
    import re

    word = text.strip()
    return bool(word) and " " not in word and (bool(re.search(r"\.[A-Za-z0-9]{1,5}$", word)) or "/" in word or word.startswith("~"))


def read_context(context: str) -> str:
    """--context as `tfx compare` takes it: a file when one exists at that path (or @FILE), else the text."""
    return qa_context(context, None, {"input_format": "jsonl"}) or ""


@task_command("embed", fmt="jsonl")
def embed(texts: o.Texts = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    run_task("embed", texts, values, common)


embed.__doc__ = f"Turn each text into a sentence embedding (default: {task_info('embed').default_model}); jsonl vectors by default."

Query = Annotated[str, typer.Argument(help="What the input lines are ranked against.", show_default=False, metavar="QUERY")]
RankTexts = Annotated[Optional[list[str]], typer.Argument(help="Texts to rank; with none, the lines of stdin (or --input).", show_default=False, metavar="TEXT")]


@task_command("rank")
def rank(query: Query, texts: RankTexts = None, values: dict = None, common: dict = None) -> None:  # type: ignore[assignment]
    run_task("rank", texts, {**values, "query": query}, common)


rank.__doc__ = f"Rank the input lines by relevance to a query, best first (default: embeddings of {task_info('rank').default_model}; --cross-encoder: {CROSS_ENCODER_MODEL})."
