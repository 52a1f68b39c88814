"""Request bodies the server accepts, validated strictly (a string is never taken for a number), and their
translation into the task settings of tfx.spec (frozen and hashable: the batcher keys batches by them)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from tfx.serve.config import MAX_SEQUENCES
from tfx.spec import SETTINGS, GenerateSettings, Settings

SEED_MAX = 2**32 - 1  # numpy, which transformers' set_seed also seeds, takes no more
OPENAI_DEFAULT_MAX_TOKENS = 16  # what OpenAI generates when a request gives no max_tokens
# Settings that set an output length, checked against --max-tokens-cap.
LENGTH_KEYS = ("max_new_tokens", "max_length", "min_new_tokens")

PosInt = Optional[int]


def field_name(key: str) -> str:
    """A settings key as the request names it (from_params' word for an unknown key)."""
    return key


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """OpenAI's /v1/completions body. Unknown fields are ignored as OpenAI-compatible servers do; fields tfx
    cannot honour are refused by `unsupported` rather than silently dropped."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)  # JSON NaN / Infinity: 422
    model: str = Field(min_length=1)
    prompt: Union[str, list[str]]
    max_tokens: PosInt = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    n: PosInt = Field(None, ge=1, le=MAX_SEQUENCES)
    seed: PosInt = Field(None, ge=0, le=SEED_MAX)
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    echo: bool = False
    user: Optional[str] = None
    # Part of OpenAI's API, refused unless left at their neutral value.
    logprobs: PosInt = None
    best_of: PosInt = None
    suffix: Optional[str] = None
    frequency_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, Any]] = None
    # tfx's own generation settings, for clients that pass extra_body.
    top_k: PosInt = Field(None, ge=0)
    num_beams: PosInt = Field(None, ge=1, le=MAX_SEQUENCES)
    repetition_penalty: Optional[float] = Field(None, gt=0)
    no_repeat_ngram_size: PosInt = Field(None, ge=0)

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def unsupported(self) -> str | None:
        """The name of a field set to something tfx does not do, if any."""
        if self.logprobs is not None:
            return "logprobs"
        if self.best_of not in (None, 1):
            return "best_of"
        if self.suffix:
            return "suffix"
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0):
                return name
        if self.logit_bias:
            return "logit_bias"
        return None

    def settings(self) -> GenerateSettings:
        """OpenAI's sampling rules in the CLI's terms. temperature 0 is greedy; a temperature, a top_p or
        n > 1 means sampling; with none of them the model's own generation config decides, as in the CLI."""
        n = self.n or 1
        if self.temperature == 0:
            do_sample = False
        elif self.temperature is not None or self.top_p is not None or n > 1:
            do_sample = True
        else:
            do_sample = None
        params = {
            "max_new_tokens": self.max_tokens or OPENAI_DEFAULT_MAX_TOKENS,
            "num_return_sequences": n if n > 1 else None,
            "do_sample": do_sample,
            "temperature": self.temperature if do_sample else None,
            "top_p": self.top_p if do_sample else None,
            "top_k": self.top_k,
            "num_beams": self.num_beams,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "seed": self.seed,
            "stop": tuple(s for s in self.stops() if s) or None,  # to transformers' stop_strings
            "continuation_only": True,  # OpenAI returns only the new text; echo puts the prompt back
        }
        return GenerateSettings.from_params(params, field_name)  # type: ignore[return-value]


class TaskRequest(BaseModel):
    """What the task endpoints share: a model (default: the CLI's for the task) and the inputs, one record
    each. Unknown fields are refused, so a misspelt parameter is an error rather than a silent default.
    The fields past these are the task's settings, under the names `Settings.wire()` gives them."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)
    task: ClassVar[str] = ""
    model: Optional[str] = Field(None, min_length=1)
    revision: Optional[str] = None
    input: Optional[str] = None
    inputs: Optional[list[str]] = Field(None, min_length=1)  # at most --max-inputs (serve.limits)
    no_truncate: bool = False

    def texts(self) -> list[str] | None:
        """The inputs, or None when the body gives neither `input` nor `inputs` (or both)."""
        if (self.input is None) == (self.inputs is None):
            return None
        return [self.input] if self.input is not None else list(self.inputs)

    def params(self) -> dict[str, Any]:
        """The task's settings by their own names (what `SETTINGS[task].from_params` takes)."""
        return self.model_dump(exclude={"model", "revision", "input", "inputs", "stream"})

    def settings(self) -> Settings:
        return SETTINGS[self.task].from_params(self.params(), field_name)


class GenerateRequest(TaskRequest):
    task: ClassVar[str] = "generate"
    max_new_tokens: PosInt = Field(None, ge=1)
    max_length: PosInt = Field(None, ge=1)
    min_new_tokens: PosInt = Field(None, ge=0)
    num_return_sequences: PosInt = Field(None, ge=1, le=MAX_SEQUENCES)
    do_sample: Optional[bool] = None
    temperature: Optional[float] = None
    top_k: PosInt = None
    top_p: Optional[float] = None
    num_beams: PosInt = Field(None, ge=1, le=MAX_SEQUENCES)
    repetition_penalty: Optional[float] = None
    no_repeat_ngram_size: PosInt = None
    seed: PosInt = Field(None, ge=0, le=SEED_MAX)
    continuation_only: bool = False
    chat: bool = False  # each input one user turn in the model's chat template (`tfx generate --chat --server`)
    stream: bool = False


class FillMaskRequest(TaskRequest):
    task: ClassVar[str] = "fill-mask"
    top_k: PosInt = Field(None, ge=1)
    targets: Union[str, list[str], None] = None  # "a,b" (what the CLI sends) or a list


class TranslateRequest(TaskRequest):
    task: ClassVar[str] = "translate"
    to: str = Field(min_length=1)
    from_: str = Field("en", alias="from", min_length=1)
    max_new_tokens: PosInt = Field(None, ge=1)
    num_beams: PosInt = Field(None, ge=1, le=MAX_SEQUENCES)
    split: bool = True  # each input translated sentence by sentence (the server splits; the CLI client does not)

    def params(self) -> dict[str, Any]:
        params = super().params()
        params["src"], params["tgt"] = params.pop("from_"), params.pop("to")
        return params


class SummarizeRequest(TaskRequest):
    task: ClassVar[str] = "summarize"
    max_new_tokens: PosInt = Field(None, ge=1)
    min_new_tokens: PosInt = Field(None, ge=0)
    num_beams: PosInt = Field(None, ge=1, le=MAX_SEQUENCES)
    strategy: Literal["map-reduce", "truncate"] = "map-reduce"  # input past the context: in parts, or its start


class ClassifyRequest(TaskRequest):
    task: ClassVar[str] = "classify"
    top_k: PosInt = Field(None, ge=1)
    labels: Union[str, list[str], None] = None  # zero-shot candidate labels: "a,b" or a list
    hypothesis_template: Optional[str] = None
    multi_label: bool = False


class NerRequest(TaskRequest):
    task: ClassVar[str] = "ner"
    aggregate: str = "simple"


class QaPair(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    question: str
    context: str


QaInput = Union[str, QaPair, tuple[str, str]]  # a question (the request's `context` applies), or a pair


class QaRequest(TaskRequest):
    """inputs: questions asked against `context`, or {question, context} objects, or [question, context]
    pairs (what `tfx qa --server` sends for jsonl records that carry their own context)."""

    task: ClassVar[str] = "qa"
    input: Optional[QaInput] = None
    inputs: Optional[list[QaInput]] = Field(None, min_length=1)
    context: Optional[str] = None
    top_k: PosInt = Field(None, ge=1)
    max_answer_length: int = Field(30, ge=1)
    stride: PosInt = Field(None, ge=0)

    def texts(self) -> list | None:
        texts = super().texts()
        return None if texts is None else [(t.question, t.context) if isinstance(t, QaPair) else t for t in texts]


class EmbedRequest(TaskRequest):
    task: ClassVar[str] = "embed"
    normalize: Optional[bool] = None
    dimensions: PosInt = Field(None, ge=1)


class RankRequest(TaskRequest):
    """Each input scored against `query` (the scores come back in input order; `tfx rank` sorts them)."""

    task: ClassVar[str] = "rank"
    query: str = Field(min_length=1)
    cross_encoder: bool = False
    top_k: PosInt = Field(None, ge=1)


TASK_REQUESTS: dict[str, type[TaskRequest]] = {
    r.task: r for r in (GenerateRequest, FillMaskRequest, TranslateRequest, SummarizeRequest, ClassifyRequest, NerRequest, QaRequest, EmbedRequest, RankRequest)
}
