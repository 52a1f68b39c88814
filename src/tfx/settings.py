"""Task settings: a frozen dataclass per task (what the user set, validated once), with the parsing from a
request body and the wire format of --server. Only what the user set is passed on to transformers.
Picklable (Ray ships them); imports nothing heavy."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from tfx import registry
from tfx.errors import UsageError

# transformers' fallback when neither the model nor the user sets a length: 20 tokens, prompt included.
LIBRARY_FALLBACK_MAX_LENGTH = 20
# Floors under which logits / value overflow float32 to inf and sampling fails (nan probabilities).
MIN_TEMPERATURE = 0.01
MIN_REPETITION_PENALTY = 0.01


@dataclass(frozen=True)
class Settings:
    """What every task's settings share: parsing from a dict (a request body, compare's options) and back
    to the dict of only what was set (the wire format of --server)."""

    no_truncate: bool = False
    wire_names: ClassVar[dict[str, str]] = {}  # field -> name on the server's task endpoints

    @classmethod
    def from_params(cls, params: dict[str, Any], flag=lambda key: "--" + key.replace("_", "-")) -> Settings:
        """Settings from a dict of the task's own names; an unknown key is a UsageError naming its flag."""
        names = {f.name for f in fields(cls)}
        for key in params:
            if key not in names:
                raise UsageError(f"{flag(key)} does not apply to this task.", f"Its options are: {', '.join(sorted(names))}.")
        return cls(**{k: v for k, v in params.items() if v is not None})

    def params(self) -> dict[str, Any]:
        """Only what differs from the defaults: what the user set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    def wire(self) -> dict[str, Any]:
        return {self.wire_names.get(k, k): list(v) if isinstance(v, tuple) else v for k, v in self.params().items()}

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        """Reject what the task would refuse or silently misuse; generation_defaults is the model's
        generation_config.json, when known (a second check, once the model is resolved)."""

    def variant(self) -> str | None:
        """The registry variant these settings ask for (classify --labels: "zero-shot"), or None."""
        return None

    def default_model(self, task: str) -> str:
        """The model a run of these settings uses when none is named."""
        return registry.default_model(task, variant=self.variant())


GENERATION_KEYS = (
    "max_new_tokens", "max_length", "min_new_tokens", "num_return_sequences", "do_sample", "temperature",
    "top_k", "top_p", "num_beams", "repetition_penalty", "no_repeat_ngram_size",
)  # fmt: skip


@dataclass(frozen=True)
class GenerationSettings(Settings):
    """model.generate's settings, for every task that generates; None: the model's generation config decides."""

    max_new_tokens: int | None = None
    max_length: int | None = None
    min_new_tokens: int | None = None
    num_return_sequences: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None

    def generate_kwargs(self) -> dict[str, Any]:
        """Only what the user set; everything else stays with the model's generation config."""
        return {k: getattr(self, k) for k in GENERATION_KEYS if getattr(self, k) is not None}

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

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        defaults = generation_defaults or {}
        for key in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
                raise UsageError(f"--{key.replace('_', '-')} must be a finite number (got {value}).", "Pass a plain number.")
        if self.max_new_tokens is not None and self.max_length is not None:
            raise UsageError("--max-new-tokens and --max-length are two ways to say one thing.", "Give only one of them.")
        for key in ("max_new_tokens", "max_length", "num_return_sequences", "num_beams"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1 (got {value}).", "Pass a positive number.")
        if self.min_new_tokens is not None and self.min_new_tokens < 0:
            raise UsageError("--min-new-tokens must be 0 or more.", "Pass a non-negative number.")
        sampling = self.sampling(defaults)
        if sampling and self.temperature is not None and self.temperature < MIN_TEMPERATURE:
            raise UsageError(  # below the floor, logits / temperature overflow to inf and sampling fails
                f"--temperature must be above 0 when sampling, and at least {MIN_TEMPERATURE} (got {self.temperature}).",
                "Use e.g. --temperature 0.7, or drop --do-sample (temperature 0 on the server) for greedy decoding.",
            )
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p must be in (0, 1] (got {self.top_p}).", "Use e.g. --top-p 0.95.")
        if self.top_k is not None and self.top_k < 0:
            raise UsageError("--top-k must be 0 or more.", "Use e.g. --top-k 50.")
        if self.repetition_penalty is not None and self.repetition_penalty < MIN_REPETITION_PENALTY:
            raise UsageError(f"--repetition-penalty must be at least {MIN_REPETITION_PENALTY} (got {self.repetition_penalty}).", "1.0 means no penalty; try 1.2.")
        beams, n = self.beams(defaults), self.num_return_sequences or 1
        if not sampling and beams > 1 and n > beams:
            raise UsageError(f"-n {n} asks for more sequences than --num-beams {beams} can return.", f"Use --num-beams {n} or more, or --do-sample.")
        if not sampling and beams == 1 and n > 1:
            raise UsageError(f"-n {n} with greedy decoding would return {n} identical sequences.", f"Add --do-sample, or --num-beams {n}.")

    def streamable(self, defaults: dict[str, Any] | None = None) -> bool:
        """transformers streams one sequence at a time, and never from beam search."""
        return (self.num_return_sequences or 1) == 1 and self.beams(defaults) == 1


@dataclass(frozen=True)
class GenerateSettings(GenerationSettings):
    seed: int | None = None
    continuation_only: bool = False  # results hold only the new text, not prompt + continuation
    stop: tuple[str, ...] | None = None  # stop strings: generation ends once one is made (the server's `stop`)
    chat: bool = False  # --chat: each input is one user turn, rendered by the model's chat template; the reply only

    def __post_init__(self) -> None:
        if self.chat:  # a chat reply never repeats the rendered template
            object.__setattr__(self, "continuation_only", True)


@dataclass(frozen=True)
class FillMaskSettings(Settings):
    top_k: int | None = None  # None: the completed sentence; k: k candidates per mask, with scores
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):  # "capital,city" from the command line or a request
            object.__setattr__(self, "targets", tuple(w.strip() for w in self.targets.split(",") if w.strip()))
        elif isinstance(self.targets, list):
            object.__setattr__(self, "targets", tuple(self.targets))

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise UsageError("--top-k must be at least 1.", "Use e.g. --top-k 5.")
        if self.targets is not None and not self.targets:
            raise UsageError("--targets is empty.", "Give comma-separated words, e.g. --targets capital,city.")

    def wire(self) -> dict[str, Any]:
        wire = super().wire()
        if self.targets is not None:
            wire["targets"] = ",".join(self.targets)
        return wire


@dataclass(frozen=True)
class TranslateSettings(GenerationSettings):
    src: str = "en"
    tgt: str | None = None
    split: bool = True  # each record split into sentences, translated, joined back (--no-split: whole)
    wire_names: ClassVar[dict[str, str]] = {"src": "from", "tgt": "to"}

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", (self.src or "en").lower())
        if self.tgt is not None:
            object.__setattr__(self, "tgt", self.tgt.lower())

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        if not self.tgt:
            raise UsageError("translate needs a target language.", "Add --to, e.g. --to fr.")
        super().validate(generation_defaults)

    def wire(self) -> dict[str, Any]:
        return {**super().wire(), "from": self.src, "to": self.tgt}

    def default_model(self, task: str) -> str:
        return registry.default_model(task, self.src, self.tgt)


@dataclass(frozen=True)
class SummarizeSettings(GenerationSettings):
    # Input longer than the model's context: "map-reduce" summarises it in chunks, then the chunks'
    # summaries; "truncate" keeps its start. Shorter input is summarised whole either way.
    strategy: str = "map-reduce"

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        if self.strategy not in SUMMARIZE_STRATEGIES:
            raise UsageError(f"unknown --strategy '{self.strategy}'.", f"Use one of: {', '.join(SUMMARIZE_STRATEGIES)}.")
        super().validate(generation_defaults)


SUMMARIZE_STRATEGIES = ("map-reduce", "truncate")


def _words(value: Any) -> Any:
    """A comma-separated string ("a,b" from the command line) or a list, as a tuple of stripped words."""
    if isinstance(value, str):
        return tuple(w.strip() for w in value.split(",") if w.strip())
    return tuple(value) if isinstance(value, list) else value


def _check_top_k(top_k: int | None, cap: int = 1000) -> None:
    if top_k is not None and not 1 <= top_k <= cap:
        raise UsageError(f"--top-k must be between 1 and {cap} (got {top_k}).", "Use e.g. --top-k 5.")


@dataclass(frozen=True)
class ClassifySettings(Settings):
    """classify: the model's own labels, or --labels for zero-shot classification through an NLI model."""

    top_k: int | None = None  # None: the best label only (1)
    labels: tuple[str, ...] | None = None  # zero-shot candidate labels
    hypothesis_template: str | None = None  # zero-shot: "This example is {}." when None
    multi_label: bool = False  # zero-shot: each label scored on its own (sigmoid of entail vs contradict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _words(self.labels))

    def variant(self) -> str | None:
        return "zero-shot" if self.labels else None

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        _check_top_k(self.top_k)
        if self.labels is not None and not self.labels:
            raise UsageError("--labels is empty.", "Give comma-separated labels, e.g. --labels sports,politics.")
        if self.labels is None and (self.hypothesis_template is not None or self.multi_label):
            raise UsageError("--hypothesis-template and --multi-label are for zero-shot classification.", "Add --labels a,b,c.")
        if self.hypothesis_template is not None and "{}" not in self.hypothesis_template:
            raise UsageError("--hypothesis-template needs {} where the label goes.", 'Use e.g. "This text is about {}."')
        if self.hypothesis_template is not None:
            try:
                self.hypothesis_template.format("label")
            except (KeyError, IndexError, ValueError):
                raise UsageError("--hypothesis-template may hold only {} (a literal brace is {{ or }}).", 'Use e.g. "This text is about {}."') from None

    def wire(self) -> dict[str, Any]:
        wire = super().wire()
        if self.labels is not None:
            wire["labels"] = list(self.labels)
        return wire


AGGREGATIONS = ("simple", "first", "average", "max", "none")


@dataclass(frozen=True)
class NerSettings(Settings):
    aggregate: str = "simple"  # transformers' aggregation_strategy names; "none": one entity per token

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        if self.aggregate not in AGGREGATIONS:
            raise UsageError(f"unknown --aggregate '{self.aggregate}'.", f"Use one of: {', '.join(AGGREGATIONS)}.")


@dataclass(frozen=True)
class QaSettings(Settings):
    context: str | None = None  # --context: the text every question is asked against (else per record)
    top_k: int | None = None  # None: the best answer only
    max_answer_length: int = 30  # tokens
    stride: int | None = None  # overlap between windows of a long context, in tokens (None: a quarter of the window)

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        _check_top_k(self.top_k, 100)
        if self.max_answer_length < 1:
            raise UsageError("--max-answer-length must be at least 1.", "Use e.g. --max-answer-length 30.")
        if self.stride is not None and self.stride < 0:
            raise UsageError("--stride must be 0 or more.", "Leave it out for an automatic choice.")


@dataclass(frozen=True)
class EmbedSettings(Settings):
    normalize: bool | None = None  # None: what the model's own modules say (sentence-transformers' Normalize)
    dimensions: int | None = None  # Matryoshka truncation

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        if self.dimensions is not None and self.dimensions < 1:
            raise UsageError("--dimensions must be at least 1.", "Use e.g. --dimensions 256.")


@dataclass(frozen=True)
class RankSettings(Settings):
    query: str = ""  # what the input lines are ranked against
    cross_encoder: bool = False  # score each (query, line) pair with a cross-encoder instead of embeddings
    top_k: int | None = None  # None: every line

    def variant(self) -> str | None:
        return "cross-encoder" if self.cross_encoder else None

    def validate(self, generation_defaults: dict[str, Any] | None = None) -> None:
        if not self.query.strip():
            raise UsageError("rank needs a query.", 'Give it as the argument, e.g. tfx rank "reset my password" < faq.txt.')
        if self.top_k is not None and self.top_k < 1:
            raise UsageError("--top-k must be at least 1.", "Use e.g. --top-k 10.")


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
