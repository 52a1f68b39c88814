"""Task settings: a frozen dataclass per task (what the user set, validated once), each field declared once with
its metadata (tfx.settings.schema: flags, help, bounds, HTTP and OpenAI names), with the parsing from a
request body and the wire format of --server. Only what the user set is passed on to transformers.
Picklable (Ray ships them); imports nothing heavy."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from tfx import registry
from tfx.errors import UsageError
from tfx.settings.schema import GENERATION_PANEL, SettingError, check_bounds, cli_namer, option, schema

# transformers' fallback when neither the model nor the user sets a length: 20 tokens, prompt included.
LIBRARY_FALLBACK_MAX_LENGTH = 20
# Floors under which logits / value overflow float32 to inf and sampling fails (nan probabilities).
MIN_TEMPERATURE = 0.01
MIN_REPETITION_PENALTY = 0.01
SEED_MAX = 2**32 - 1  # numpy, which transformers' set_seed also seeds, takes no more
SUMMARIZE_STRATEGIES = ("map-reduce", "truncate")
AGGREGATIONS = ("simple", "first", "average", "max", "none")
MAX_TOP_LOGPROBS = 20  # OpenAI's top_logprobs limit
# GenerateSettings fields the generate task turns into model.generate kwargs itself (a logits processor, a hook)
TASK_GENERATION_KEYS = ("logprobs", "json_schema", "json_object")


def _words(value: Any) -> Any:
    """A comma-separated string ("a,b" from the command line) or a list, as a tuple of stripped words."""
    if isinstance(value, str):
        return tuple(w.strip() for w in value.split(",") if w.strip())
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Settings:
    """What every task's settings share: parsing from a dict (a request body, compare's options) and back
    to the dict of only what was set (the wire format of --server)."""

    no_truncate: bool = option(False, help="Treat an input longer than the model's context as a bad record instead of cutting it.", panel="Input and output")

    def __post_init__(self) -> None:
        for f in schema(type(self)):  # lists arrive as lists (requests) or "a,b" (the command line)
            value = getattr(self, f.name)
            if f.opt.words:
                object.__setattr__(self, f.name, _words(value))
            elif f.opt.many and isinstance(value, (list, str)):
                object.__setattr__(self, f.name, (value,) if isinstance(value, str) else tuple(value))

    @classmethod
    def from_params(cls, params: dict[str, Any], flag=None) -> Settings:
        """Settings from a dict of the task's own names; an unknown key is a UsageError naming it as `flag`
        names it (default: its CLI flag)."""
        names = {f.name for f in fields(cls)}
        name_of = flag or cli_namer(cls)
        for key in params:
            if key not in names:
                raise UsageError(f"{name_of(key)} does not apply to this task.", f"Its options are: {', '.join(sorted(name_of(n) for n in names))}.")
        return cls(**{k: v for k, v in params.items() if v is not None})

    def params(self) -> dict[str, Any]:
        """Only what differs from the defaults: what the user set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    def wire(self) -> dict[str, Any]:
        """What the user set, under the task endpoint's names (the --server client's body)."""
        by_name = {f.name: f for f in schema(type(self))}
        out = {}
        for key, value in self.params().items():
            f = by_name.get(key)
            name = f.http_name if f is not None else key
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        """Reject what the task would refuse or silently misuse: each field's bounds (the schema), then the
        rules between fields (`check`); generation_defaults is the model's generation_config.json, when known."""
        check_bounds(self)
        self.check(generation_defaults or {})

    def check(self, defaults: dict[str, Any]) -> None:
        """The rules between fields, for settings classes that have some."""

    def fail(self, template: str, hint: str | None = None, **values: Any) -> SettingError:
        return SettingError(type(self), template, hint, **values)

    def variant(self) -> str | None:
        """The registry variant these settings ask for (classify --labels: "zero-shot"), or None."""
        return None

    def default_model(self, task: str) -> str:
        """The model a run of these settings uses when none is named."""
        return registry.default_model(task, variant=self.variant())


G = GENERATION_PANEL


@dataclass(frozen=True)
class GenerationSettings(Settings):
    """model.generate's settings, for every task that generates; None: the model's generation config decides."""

    max_new_tokens: int | None = option(help="Most tokens to generate.", ge=1, openai="max_tokens", panel=G)
    max_length: int | None = option(help="Most tokens in all, prompt included (the seed's max_length).", ge=1, panel=G)
    min_new_tokens: int | None = option(help="Fewest tokens to generate.", ge=0, panel=G)
    num_return_sequences: int | None = option(help="Sequences per input (they stay in one record).", flags=("--num-return-sequences", "-n"), ge=1, openai="n", panel=G)
    do_sample: bool | None = option(help="Sample instead of the model's default decoding.", flags=("--do-sample",), off="--greedy", panel=G)
    temperature: float | None = option(help="Sampling temperature (> 0).", ge=0, openai="temperature", panel=G)
    top_k: int | None = option(help="Sample from the k most likely tokens.", ge=0, panel=G)
    top_p: float | None = option(help="Nucleus sampling mass, in (0, 1].", gt=0, le=1, openai="top_p", panel=G)
    num_beams: int | None = option(help="Beam search width (1: greedy or sampling).", ge=1, panel=G)
    repetition_penalty: float | None = option(help="Penalty for repeated tokens (1.0: none).", ge=MIN_REPETITION_PENALTY, panel=G)
    no_repeat_ngram_size: int | None = option(help="Never repeat an n-gram of this size.", ge=0, panel=G)

    def generate_kwargs(self) -> dict[str, Any]:
        """Only what the user set; everything else stays with the model's generation config."""
        return {f.name: getattr(self, f.name) for f in schema(GenerationSettings) if f.opt.panel == G and getattr(self, f.name) is not None}

    def sampling(self, defaults: dict[str, Any] | None = None) -> bool:
        return self.do_sample if self.do_sample is not None else bool((defaults or {}).get("do_sample"))

    def beams(self, defaults: dict[str, Any] | None = None) -> int:
        return self.num_beams or (defaults or {}).get("num_beams") or 1

    def sets_length(self, defaults: dict[str, Any]) -> bool:
        """True when the user or the model's generation_config.json chose an output length."""
        if self.max_new_tokens is not None or self.max_length is not None:
            return True
        if defaults.get("max_new_tokens") is not None:
            return True
        return defaults.get("max_length") not in (None, LIBRARY_FALLBACK_MAX_LENGTH)

    def check(self, defaults: dict[str, Any]) -> None:
        if self.max_new_tokens is not None and self.max_length is not None:
            raise self.fail("{max_new_tokens} and {max_length} are two ways to say one thing.", "Give only one of them.")
        sampling = self.sampling(defaults)
        if sampling and self.temperature is not None and self.temperature < MIN_TEMPERATURE:
            raise self.fail(  # below the floor, logits / temperature overflow to inf and sampling fails
                "{temperature} must be above 0 when sampling, and at least %s (got {value})." % MIN_TEMPERATURE,
                "Use e.g. {temperature} 0.7, or greedy decoding ({do_sample} off, or temperature 0 on the server).",
                value=self.temperature,
            )
        beams, n = self.beams(defaults), self.num_return_sequences or 1
        if not sampling and beams > 1 and n > beams:
            raise self.fail("{num_return_sequences} %d asks for more sequences than {num_beams} %d can return." % (n, beams), "Use {num_beams} %d or more, or {do_sample}." % n)
        if not sampling and beams == 1 and n > 1:
            raise self.fail("{num_return_sequences} %d with greedy decoding would return %d identical sequences." % (n, n), "Add {do_sample}, or {num_beams} %d." % n)

    def streamable(self, defaults: dict[str, Any] | None = None) -> bool:
        """transformers streams one sequence at a time, and never from beam search."""
        return (self.num_return_sequences or 1) == 1 and self.beams(defaults) == 1


GENERATION_KEYS = tuple(f.name for f in schema(GenerationSettings) if f.opt.panel == G)  # model.generate's own


@dataclass(frozen=True)
class GenerateSettings(GenerationSettings):
    seed: int | None = option(help="Random seed, for reproducible sampling.", ge=0, le=SEED_MAX, openai="seed")
    # results hold only the new text, not prompt + continuation
    continuation_only: bool = option(False, help="Print only the new text, not the prompt.")
    # stop strings: generation ends once one is made (the server's `stop`)
    stop: tuple[str, ...] | None = option(help="End the text where this string is made (repeatable).", many=True, metavar="TEXT", openai="stop")
    # --chat: each input is one user turn, rendered by the model's chat template; the reply only
    chat: bool = option(False, help="Each record is one user message to a chat model, put in its chat template; prints the reply only.")
    # Per generated token: its log-probability (log_softmax of the model's raw logits) and the N most likely
    # alternatives (0: none); in the jsonl record's "logprobs" (tfx.tasks.logprobs). The server maps OpenAI's
    # logprobs / top_logprobs onto it, so no openai= name.
    logprobs: int | None = option(help="Record each generated token's log-probability and the N most likely alternatives (0: the token's own only; --format jsonl shows them).", ge=0, le=MAX_TOP_LOGPROBS, metavar="N")
    # Constrained decoding (tfx.tasks.constrain, xgrammar): the text is JSON valid against this schema (JSON text)
    json_schema: str | None = option(help="Make the output JSON that validates against the JSON Schema in this file (constrained decoding; prints the JSON only).", flags=("--json-schema",), file=True, metavar="FILE", panel=G)
    json_object: bool = option(False, help="Make the output one JSON object (constrained decoding; prints the JSON only).", flags=("--json",), panel=G)

    def __post_init__(self) -> None:
        super().__post_init__()
        schema = self.json_schema
        if isinstance(schema, str):  # a file's text: canonical (compact, key order kept) where it parses
            try:
                schema = json.loads(schema)
            except ValueError:
                pass  # check() names the fault
        if isinstance(schema, (dict, list, bool, int, float)):  # JSON text either way: hashable, one spelling
            object.__setattr__(self, "json_schema", json.dumps(schema, ensure_ascii=False, separators=(",", ":")))
        if self.chat or self.json_schema is not None or self.json_object:  # a chat reply / the JSON alone
            object.__setattr__(self, "continuation_only", True)

    def constrained(self) -> bool:
        return self.json_schema is not None or bool(self.json_object)

    def generate_kwargs(self) -> dict[str, Any]:
        """transformers' own kwargs, plus the settings the generate task turns into them (logprobs, the JSON
        grammar): a backend that does not know them refuses them (the fast GPT-2 path, CTranslate2's plan)."""
        kwargs = super().generate_kwargs()
        kwargs.update({name: getattr(self, name) for name in TASK_GENERATION_KEYS if getattr(self, name) is not None and getattr(self, name) is not False})
        return kwargs

    def check(self, defaults: dict[str, Any]) -> None:
        super().check(defaults)
        if self.json_schema is not None and self.json_object:
            raise self.fail("{json_schema} and {json_object} are two ways to ask for JSON.", "Give only one of them.")
        if self.json_schema is not None:
            try:
                parsed = json.loads(self.json_schema)
            except ValueError as exc:
                raise self.fail("{json_schema} is not valid JSON ({why}).", "Give a JSON Schema, e.g. {{\"type\": \"object\"}}.", why=str(exc)) from None
            if not isinstance(parsed, (dict, bool)):
                raise self.fail("{json_schema} must be a JSON Schema: a JSON object (got {kind}).", "Give a JSON Schema, e.g. {{\"type\": \"object\"}}.", kind=type(parsed).__name__)
        beams = self.beams(defaults)
        if beams > 1 and (self.constrained() or self.logprobs is not None):
            name = "logprobs" if self.logprobs is not None else "json_schema" if self.json_schema is not None else "json_object"
            raise self.fail("{%s} does not work with beam search ({num_beams} %d): beams are reordered at every step." % (name, beams), "Use {num_beams} 1 (greedy or sampling).")


@dataclass(frozen=True)
class FillMaskSettings(Settings):
    # None: the completed sentence; k: k candidates per mask, with scores
    top_k: int | None = option(help="List this many candidates per mask, with scores.", flags=("--top-k", "-k"), ge=1)
    targets: tuple[str, ...] | None = option(help="Comma-separated words: only these are candidates.", words=True, metavar="WORDS")

    def check(self, defaults: dict[str, Any]) -> None:
        if self.targets is not None and not self.targets:
            raise self.fail("{targets} is empty.", "Give comma-separated words, e.g. {targets} capital,city.")

    def wire(self) -> dict[str, Any]:
        wire = super().wire()
        if self.targets is not None:
            wire["targets"] = ",".join(self.targets)
        return wire


@dataclass(frozen=True)
class TranslateSettings(GenerationSettings):
    src: str = option("en", help="Source language, an ISO code.", flags=("--from",), http="from", metavar="LANG")
    tgt: str | None = option(help="Target language, an ISO code (fr, de, es, ...). Required.", flags=("--to", "-t"), http="to", metavar="LANG")
    # each record split into sentences, translated, joined back (--no-split: whole)
    split: bool = option(True, help="Translate each text sentence by sentence and join them back (--no-split: each text whole, as the model sees it).", flags=("--split",), off="--no-split")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "src", (self.src or "en").lower())
        if self.tgt is not None:
            object.__setattr__(self, "tgt", self.tgt.lower())

    def check(self, defaults: dict[str, Any]) -> None:
        if not self.tgt:
            raise self.fail("translate needs a target language.", "Add {tgt}, e.g. {tgt} fr.")
        for name in ("src", "tgt"):
            code = getattr(self, name)
            if not registry.is_language_code(code):
                raise self.fail("{%s} %s is not a language code." % (name, code), "Use an ISO 639 code, e.g. fr, de, es, zh (two letters) or fra (three).")
        super().check(defaults)

    def wire(self) -> dict[str, Any]:
        return {**super().wire(), "from": self.src, "to": self.tgt}

    def default_model(self, task: str) -> str:
        return registry.default_model(task, self.src, self.tgt)


@dataclass(frozen=True)
class SummarizeSettings(GenerationSettings):
    # Input longer than the model's context: "map-reduce" summarises it in chunks, then the chunks'
    # summaries; "truncate" keeps its start. Shorter input is summarised whole either way.
    strategy: str = option("map-reduce", help="Input longer than the model's context: map-reduce (summarise it in parts, then their summaries) or truncate (its start only).", choices=SUMMARIZE_STRATEGIES)


@dataclass(frozen=True)
class ClassifySettings(Settings):
    """classify: the model's own labels, or --labels for zero-shot classification through an NLI model."""

    top_k: int | None = option(help="Show the k best labels (default 1).", flags=("--top-k", "-k"), ge=1, le=1000)  # None: the best label only
    labels: tuple[str, ...] | None = option(help="Comma-separated labels: zero-shot classification through an NLI model.", words=True, metavar="LABELS")
    hypothesis_template: str | None = option(help='Zero-shot: the hypothesis each label is put into (default: "This example is {}.").')
    multi_label: bool = option(False, help="Zero-shot: score each label on its own (several can be true).")

    def variant(self) -> str | None:
        return "zero-shot" if self.labels else None

    def check(self, defaults: dict[str, Any]) -> None:
        if self.labels is not None and not self.labels:
            raise self.fail("{labels} is empty.", "Give comma-separated labels, e.g. {labels} sports,politics.")
        if self.labels is None and (self.hypothesis_template is not None or self.multi_label):
            raise self.fail("{hypothesis_template} and {multi_label} are for zero-shot classification.", "Add {labels} a,b,c.")
        if self.hypothesis_template is not None and "{}" not in self.hypothesis_template:
            raise self.fail("{hypothesis_template} needs {{}} where the label goes.", 'Use e.g. "This text is about {{}}."')
        if self.hypothesis_template is not None:
            try:
                self.hypothesis_template.format("label")
            except (KeyError, IndexError, ValueError):
                raise self.fail("{hypothesis_template} may hold only {{}} (a literal brace is {{{{ or }}}}).", 'Use e.g. "This text is about {{}}."') from None


@dataclass(frozen=True)
class NerSettings(Settings):
    # transformers' aggregation_strategy names; "none": one entity per token
    aggregate: str = option("simple", help="How word pieces become entities: simple, first, average, max, or none (one per token).", choices=AGGREGATIONS)


@dataclass(frozen=True)
class QaSettings(Settings):
    # --context: the text every question is asked against (else per record); the CLI reads --context-file
    context: str | None = option(help="The text to answer from (jsonl records may carry their own \"context\").", flags=("--context", "-c"), cli=False)
    top_k: int | None = option(help="Show the k best answers, with scores.", flags=("--top-k", "-k"), ge=1, le=100)  # None: the best answer only
    max_answer_length: int = option(30, help="Longest answer, in tokens.", ge=1)
    # overlap between windows of a long context, in tokens (None: a quarter of the window)
    stride: int | None = option(help="Tokens shared by neighbouring windows of a long context.", ge=0)


@dataclass(frozen=True)
class EmbedSettings(Settings):
    # None: what the model's own modules say (sentence-transformers' Normalize)
    normalize: bool | None = option(help="Unit-length vectors (default: what the model's own modules say).", flags=("--normalize",), off="--no-normalize")
    dimensions: int | None = option(help="Keep the first N dimensions (Matryoshka models).", ge=1, openai="dimensions")


@dataclass(frozen=True)
class RankSettings(Settings):
    query: str = option("", help="What the input lines are ranked against.", cli=False)
    cross_encoder: bool = option(False, help="Score each (query, line) pair with a cross-encoder instead of embeddings.")
    top_k: int | None = option(help="Show only the k best lines.", flags=("--top-k", "-k"), ge=1)  # None: every line

    def variant(self) -> str | None:
        return "cross-encoder" if self.cross_encoder else None

    def check(self, defaults: dict[str, Any]) -> None:
        if not self.query.strip():
            raise self.fail("rank needs a query.", 'Give it as the argument, e.g. tfx rank "reset my password" < faq.txt.')


SETTINGS: dict[str, type[Settings]] = {
    "generate": GenerateSettings,
    "fill-mask": FillMaskSettings,
    "translate": TranslateSettings,
    "summarize": SummarizeSettings,
    "classify": ClassifySettings,
    "ner": NerSettings,
    "qa": QaSettings,
    "embed": EmbedSettings,
    "rank": RankSettings,
}
