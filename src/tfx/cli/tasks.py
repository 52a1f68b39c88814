"""The task commands (generate, fill-mask, translate, summarize, classify, ner, qa, embed, rank): each
declares its own options (the shared ones come from options.task_command), builds a RunSpec from argv and
hands it to the engine the options pick. Nothing heavy is imported here."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from tfx.cli import options as o
from tfx.cli.common import execute, setup
from tfx.cli.options import task_command
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

  tfx qa --context article.txt "Where is Hugging Face based?"

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


def register(app: typer.Typer) -> None:
    app.command(epilog=GENERATE_EXAMPLES)(generate)
    app.command("fill-mask", epilog=FILL_MASK_EXAMPLES)(fill_mask)
    app.command(epilog=TRANSLATE_EXAMPLES)(translate)
    app.command(epilog=SUMMARIZE_EXAMPLES)(summarize)
    app.command(epilog=CLASSIFY_EXAMPLES)(classify)
    app.command(epilog=NER_EXAMPLES)(ner)
    app.command(epilog=QA_EXAMPLES)(qa)
    app.command(epilog=EMBED_EXAMPLES)(embed)
    app.command(epilog=RANK_EXAMPLES)(rank)


def run_task(task: str, texts, settings_of, common: dict, stream: bool | None = None) -> None:
    """Build the spec (checked once, before any model), then run it on the engine the options pick."""

    def body() -> int:
        setup(common.pop("offline"), common["quiet"], common["verbose"])
        from tfx import engines, spec

        settings = settings_of(common.pop("no_truncate"))
        run = spec.build(task, settings, model=common.pop("model"), **_spec_parts(texts, common, stream))
        if not run.inputs.texts and run.inputs.path is None and sys.stdin.isatty():
            from tfx.errors import UsageError

            raise UsageError("no input.", "Give the text as an argument, pipe lines on stdin, or use --input FILE.")
        return engines.run(run)

    execute(body)


def _spec_parts(texts, c: dict, stream: bool | None) -> dict:
    from tfx import spec

    engine = "remote" if c["server"] else c["engine"]
    # --engine ct2|auto is the local engine with another backend (RunSpec.backend): CTranslate2 computes in
    # this process; Ray replicas and the server open tasks from the same spec fields.
    backend = engine if engine in ("ct2", "auto") else "transformers"
    engine = "local" if backend != "transformers" else engine
    return dict(backend=backend, compute_type=c["compute_type"],
        revision=c["revision"], device=c["device"], dtype=c["dtype"], trust_remote_code=c["trust_remote_code"],
        inputs=spec.Inputs(tuple(texts or ()), c["input_file"], c["input_format"]),
        output=spec.Output(c["fmt"], stream, c["output"], c["output_format"]),
        engine=spec.Engine(engine, c["server"], c["ray_address"], c["replicas"], c["gpus_per_replica"]),
        batch_size=c["batch_size"], keep_going=c["keep_going"], quiet=c["quiet"], verbose=c["verbose"],
    )  # fmt: skip


def _settings(name: str, **values):
    """The task's settings class, built inside the catch point: a bad value is a one-line error."""
    from tfx import spec

    return lambda no_truncate: spec.SETTINGS[name](no_truncate=no_truncate, **values)


TopK = Annotated[Optional[int], typer.Option("--top-k", "-k", help="Show this many candidates, with scores.", show_default=False)]


@task_command()
def generate(
    texts: o.Texts = None,
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
    chat: Annotated[bool, typer.Option("--chat", help="Each record is one user message to a chat model, put in its chat template; prints the reply only.")] = False,
    common: dict = None,  # type: ignore[assignment]
) -> None:
    settings = _settings(
        "generate", chat=chat, max_new_tokens=max_new_tokens, max_length=max_length, num_return_sequences=num_return_sequences,
        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
        repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size, seed=seed,
        continuation_only=continuation_only,
    )  # fmt: skip
    run_task("generate", texts, settings, common, stream)


generate.__doc__ = f"Continue each prompt with a decoder-only model (default: {DEFAULT_GENERATE_MODEL}); prints prompt + continuation."


@task_command()
def fill_mask(
    texts: o.Texts = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="List this many candidates per mask, with scores.", show_default=False)] = None,
    targets: Annotated[Optional[str], typer.Option("--targets", help="Comma-separated words: only these are candidates.", show_default=False)] = None,
    common: dict = None,  # type: ignore[assignment]
) -> None:
    run_task("fill-mask", texts, _settings("fill-mask", top_k=top_k, targets=targets), common)


fill_mask.__doc__ = (
    f"Fill in [MASK] with an encoder-only model (default: {DEFAULT_FILL_MASK_MODEL}); prints the completed sentence. "
    "[MASK] works for every model; several masks are each filled with their best prediction."
)


@task_command()
def translate(
    texts: o.Texts = None,
    to: Annotated[Optional[str], typer.Option("--to", "-t", help="Target language, an ISO code (fr, de, es, ...). Required.", show_default=False)] = None,
    src: Annotated[str, typer.Option("--from", help="Source language, an ISO code.")] = "en",
    max_new_tokens: o.MaxNewTokens = None,
    num_beams: o.NumBeams = None,
    split: Annotated[bool, typer.Option("--split/--no-split", help="Translate each text sentence by sentence and join them back (--no-split: each text whole, as the model sees it).")] = True,
    common: dict = None,  # type: ignore[assignment]
) -> None:
    """Translate each text (default model: t5-small for en->fr/de/ro, else Helsinki-NLP/opus-mt-{from}-{to}), sentence by sentence."""
    run_task("translate", texts, _settings("translate", src=src, tgt=to, max_new_tokens=max_new_tokens, num_beams=num_beams, split=split), common)


@task_command()
def summarize(
    texts: o.Texts = None,
    max_new_tokens: o.MaxNewTokens = None,
    min_new_tokens: o.MinNewTokens = None,
    num_beams: o.NumBeams = None,
    strategy: Annotated[str, typer.Option("--strategy", help="Input longer than the model's context: map-reduce (summarise it in parts, then their summaries) or truncate (its start only).")] = "map-reduce",
    common: dict = None,  # type: ignore[assignment]
) -> None:
    run_task("summarize", texts, _settings("summarize", max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams, strategy=strategy), common)


summarize.__doc__ = f"Summarise each text with an encoder-decoder model (default: {DEFAULT_SUMMARIZE_MODEL}; T5 gets 'summarize: ')."


@task_command()
def classify(
    texts: o.Texts = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="Show the k best labels (default 1).", show_default=False)] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help=f"Comma-separated labels: zero-shot classification through an NLI model (default: {ZERO_SHOT_MODEL}).", show_default=False)] = None,
    hypothesis_template: Annotated[Optional[str], typer.Option("--hypothesis-template", help='Zero-shot: the hypothesis each label is put into (default: "This example is {}.").', show_default=False)] = None,
    multi_label: Annotated[bool, typer.Option("--multi-label", help="Zero-shot: score each label on its own (several can be true).")] = False,
    common: dict = None,  # type: ignore[assignment]
) -> None:
    settings = _settings("classify", top_k=top_k, labels=labels, hypothesis_template=hypothesis_template, multi_label=multi_label)
    run_task("classify", texts, settings, common)


classify.__doc__ = f"Label each text with a fine-tuned encoder classifier (default: {task_info('classify').default_model}); prints LABEL<TAB>score."


@task_command()
def ner(
    texts: o.Texts = None,
    aggregate: Annotated[str, typer.Option("--aggregate", help="How word pieces become entities: simple, first, average, max, or none (one per token).")] = "simple",
    common: dict = None,  # type: ignore[assignment]
) -> None:
    run_task("ner", texts, _settings("ner", aggregate=aggregate), common)


ner.__doc__ = f"Find named entities (people, places, organisations) with a token classifier (default: {task_info('ner').default_model})."


@task_command()
def qa(
    texts: o.Texts = None,
    context: Annotated[Optional[str], typer.Option("--context", "-c", help="The text to answer from: a file, or the text itself (jsonl records may carry their own \"context\").", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="Show the k best answers, with scores.", show_default=False)] = None,
    max_answer_length: Annotated[int, typer.Option("--max-answer-length", help="Longest answer, in tokens.")] = 30,
    stride: Annotated[Optional[int], typer.Option("--stride", help="Tokens shared by neighbouring windows of a long context.", show_default=False)] = None,
    common: dict = None,  # type: ignore[assignment]
) -> None:
    run_task("qa", texts, lambda no_truncate: _qa_settings(context, top_k, max_answer_length, stride, no_truncate), common)


qa.__doc__ = f"Answer each question with a span of the context (extractive QA; default: {task_info('qa').default_model})."


def _qa_settings(context: str | None, top_k, max_answer_length, stride, no_truncate):
    from tfx import spec

    context = read_context(context) if context is not None else None
    return spec.QaSettings(context=context, top_k=top_k, max_answer_length=max_answer_length, stride=stride, no_truncate=no_truncate)


def read_context(context: str) -> str:
    """--context names a file when one exists at that path; otherwise it is the text itself."""
    import os

    from tfx.errors import UsageError

    if not os.path.isfile(context):
        return context
    try:
        with open(context, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise UsageError(f"cannot read --context {context}: {why}.", "Give a UTF-8 text file, or the text itself.") from None


@task_command(fmt="jsonl")
def embed(
    texts: o.Texts = None,
    normalize: Annotated[Optional[bool], typer.Option("--normalize/--no-normalize", help="Unit-length vectors (default: what the model's own modules say).", show_default=False)] = None,
    dimensions: Annotated[Optional[int], typer.Option("--dimensions", help="Keep the first N dimensions (Matryoshka models).", show_default=False)] = None,
    common: dict = None,  # type: ignore[assignment]
) -> None:
    run_task("embed", texts, _settings("embed", normalize=normalize, dimensions=dimensions), common)


embed.__doc__ = f"Turn each text into a sentence embedding (default: {task_info('embed').default_model}); jsonl vectors by default."


@task_command()
def rank(
    query: Annotated[str, typer.Argument(help="What the input lines are ranked against.", show_default=False)],
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to rank; with none, the lines of stdin (or --input).", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="Show only the k best lines.", show_default=False)] = None,
    cross_encoder: Annotated[bool, typer.Option("--cross-encoder", help=f"Score each (query, line) pair with a cross-encoder (default: {CROSS_ENCODER_MODEL}).")] = False,
    common: dict = None,  # type: ignore[assignment]
) -> None:
    run_task("rank", texts, _settings("rank", query=query, top_k=top_k, cross_encoder=cross_encoder), common)


rank.__doc__ = f"Rank the input lines by relevance to a query, best first (default: embeddings of {task_info('rank').default_model})."
