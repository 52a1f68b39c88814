"""RunSpec: one run, typed and immutable, built once from argv (or a request body) and validated once,
before any model is touched. Task settings are a dataclass per task; only what the user set is passed
on to transformers. Picklable: Ray ships it to its replicas. Imports nothing heavy."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from tfx import registry
from tfx.errors import UsageError

FORMATS = ("text", "jsonl", "tsv")
INPUT_FORMATS = ("text", "jsonl")
OUTPUT_FORMATS = ("jsonl", "parquet")
ENGINES = ("local", "ray")  # --engine; --server picks "remote"

# transformers' fallback when neither the model nor the user sets a length: 20 tokens, prompt included.
LIBRARY_FALLBACK_MAX_LENGTH = 20


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
        if sampling and self.temperature is not None and self.temperature <= 0:
            raise UsageError(
                f"--temperature must be above 0 when sampling (got {self.temperature}).",
                "Use e.g. --temperature 0.7, or drop --do-sample for greedy decoding.",
            )
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p must be in (0, 1] (got {self.top_p}).", "Use e.g. --top-p 0.95.")
        if self.top_k is not None and self.top_k < 0:
            raise UsageError("--top-k must be 0 or more.", "Use e.g. --top-k 50.")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise UsageError("--repetition-penalty must be above 0.", "1.0 means no penalty; try 1.2.")
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


@dataclass(frozen=True)
class SummarizeSettings(GenerationSettings):
    pass


SETTINGS: dict[str, type[Settings]] = {
    "generate": GenerateSettings,
    "fill-mask": FillMaskSettings,
    "translate": TranslateSettings,
    "summarize": SummarizeSettings,
}


@dataclass(frozen=True)
class Inputs:
    texts: tuple[str, ...] = ()  # command-line texts; none (or "-"): stdin
    path: str | None = None  # --input
    format: str = "text"  # text | jsonl


@dataclass(frozen=True)
class Output:
    format: str = "text"  # text | jsonl | tsv
    stream: bool | None = None  # generate: tokens as they come (None: for one prompt on a terminal)
    path: str | None = None  # --engine ray: the output directory
    shard_format: str = "jsonl"  # --engine ray: jsonl | parquet


@dataclass(frozen=True)
class Engine:
    name: str = "local"  # local | remote | ray
    server: str | None = None  # remote: the tfx serve URL
    ray_address: str | None = None
    replicas: int | None = None
    gpus_per_replica: float = 0.0


@dataclass(frozen=True)
class RunSpec:
    task: str
    settings: Settings
    model: str  # what the user named, or the task's default
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    inputs: Inputs = field(default_factory=Inputs)
    output: Output = field(default_factory=Output)
    engine: Engine = field(default_factory=Engine)
    batch_size: int | None = None
    keep_going: bool = False
    quiet: bool = False
    verbose: bool = False

    @property
    def generative(self) -> bool:
        return registry.task_info(self.task).generative

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)


def build(task: str, settings: Settings, model: str | None = None, **rest: Any) -> RunSpec:
    """The one place a run is checked before any model is touched; returns the immutable spec."""
    info = registry.task_info(task)
    if not isinstance(settings, SETTINGS[info.name]):
        raise TypeError(f"{info.name} takes {SETTINGS[info.name].__name__}, not {type(settings).__name__}")
    settings.validate()
    src, tgt = getattr(settings, "src", "en"), getattr(settings, "tgt", None)
    spec = RunSpec(task=info.name, settings=settings, model=model or registry.default_model(info.name, src, tgt), **rest)
    check(spec)
    return spec


def check(spec: RunSpec) -> None:
    if spec.output.format not in FORMATS:
        raise UsageError(f"unknown --format '{spec.output.format}'.", f"Use one of: {', '.join(FORMATS)}.")
    if spec.inputs.format not in INPUT_FORMATS:
        raise UsageError(f"unknown --input-format '{spec.inputs.format}'.", "Use text or jsonl.")
    if spec.engine.name not in (*ENGINES, "remote"):
        raise UsageError(f"unknown --engine '{spec.engine.name}'.", f"Use one of: {', '.join(ENGINES)}.")
    if spec.batch_size is not None and spec.batch_size < 1:
        raise UsageError("--batch-size must be at least 1.", "Leave it out for an automatic choice.")
    if spec.inputs.path is not None and spec.inputs.texts:
        raise UsageError("give the input either as arguments or with --input, not both.", "Drop one of them.")
    if any(not t.strip() for t in spec.inputs.texts if t != "-"):
        raise UsageError("the input text is empty.", 'Pass some text, e.g. tfx generate "Once upon a time".')
