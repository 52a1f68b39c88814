"""Request bodies the server accepts, derived from the one settings schema (tfx.settings): each task
endpoint's model holds the fields its settings class declares with `server=True`, under their HTTP names,
and OpenAI's completions, chat and responses bodies share ONE declaration of the sampling fields
(`SamplingRequest`, built from the fields that carry an `openai` name, plus tfx's own generation settings
for clients that pass extra_body). Types are strict (a string is never taken for a number); bounds are
not declared here: they are the settings' own, checked by `Settings.validate`, whose SettingError the
server renders with the request's names (`namer`)."""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from tfx.settings import GenerateSettings, SettingField, http_namer, schema
from tfx.spec import SETTINGS, Settings

OPENAI_DEFAULT_MAX_TOKENS = 16  # what OpenAI generates when a completions request gives no max_tokens
# Settings that set an output length, checked against --max-tokens-cap.
LENGTH_KEYS = ("max_new_tokens", "max_length", "min_new_tokens")
# Task-endpoint fields that are not settings (the inputs, the model, streaming).
REQUEST_KEYS = ("model", "revision", "input", "inputs", "stream")
# GenerateSettings fields an OpenAI body never names: the sampling switch follows temperature, the length
# is max_tokens, and chat/continuation_only are what the endpoint is.
OPENAI_DERIVED = ("do_sample", "max_length", "chat", "continuation_only", "no_truncate", "logprobs", "json_schema", "json_object")

PosInt = Optional[int]


def annotation(f: SettingField) -> Any:
    """A settings field's type in a request: lists ("a,b" or a JSON list) for words and repeatable fields."""
    if f.opt.words or f.opt.many:
        return Union[str, list[str], None]
    return f.type


def setting_fields(cls: type, names: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """create_model's field definitions for cls's server fields: python name = the settings name, the
    request's name its alias (translate's src arrives as "from"); names maps a field to another alias."""
    out: dict[str, Any] = {}
    for f in schema(cls):
        if not f.opt.server or f.name in skip:
            continue
        alias = (names or {}).get(f.name, f.http_name)
        out[f.name] = (annotation(f), Field(f.default, alias=alias) if alias != f.name else f.default)
    return out


# --- the task endpoints ---------------------------------------------------------------------------------


class TaskRequest(BaseModel):
    """What the task endpoints share: a model (default: the CLI's for the task) and the inputs, one record
    each. Unknown fields are refused, so a misspelt parameter is an error rather than a silent default.
    The fields past these are the task's settings, derived from its settings class."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    task: ClassVar[str] = ""
    model: Optional[str] = Field(None, min_length=1)
    revision: Optional[str] = None
    input: Optional[str] = None
    inputs: Optional[list[str]] = Field(None, min_length=1)  # at most --max-inputs (serve.limits)

    def texts(self) -> list[str] | None:
        """The inputs, or None when the body gives neither `input` nor `inputs` (or both)."""
        if (self.input is None) == (self.inputs is None):
            return None
        return [self.input] if self.input is not None else list(self.inputs)

    def params(self) -> dict[str, Any]:
        """The task's settings by their own names (what `SETTINGS[task].from_params` takes)."""
        return self.model_dump(exclude=set(REQUEST_KEYS))

    def settings(self) -> Settings:
        cls = SETTINGS[self.task]
        return cls.from_params(self.params(), http_namer(cls))

    @classmethod
    def namer(cls):
        """Settings field -> its name in this body (what a SettingError names)."""
        return http_namer(SETTINGS[cls.task])


class QaPair(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    question: str
    context: str


QaInput = Union[str, QaPair, tuple[str, str]]  # a question (the request's `context` applies), or a pair


class _QaInputs(TaskRequest):
    """qa's inputs: questions asked against `context`, or {question, context} objects, or [question,
    context] pairs (what `tfx qa --server` sends for jsonl records that carry their own context)."""

    input: Optional[QaInput] = None
    inputs: Optional[list[QaInput]] = Field(None, min_length=1)

    def texts(self) -> list | None:
        texts = super().texts()
        return None if texts is None else [(t.question, t.context) if isinstance(t, QaPair) else t for t in texts]


class _Streamed(TaskRequest):
    stream: bool = False  # one input, its text as it is made (`tfx generate --server` on a terminal)


_BASES: dict[str, type[TaskRequest]] = {"generate": _Streamed, "qa": _QaInputs}


def task_request(task: str) -> type[TaskRequest]:
    cls = SETTINGS[task]
    name = "".join(part.title() for part in task.split("-")) + "Request"
    model = create_model(name, __base__=_BASES.get(task, TaskRequest), **setting_fields(cls))
    model.task = task
    model.__doc__ = f"The body of POST /v1/{task}: inputs and the fields of {cls.__name__}."
    return model


TASK_REQUESTS: dict[str, type[TaskRequest]] = {task: task_request(task) for task in SETTINGS}
GenerateRequest = TASK_REQUESTS["generate"]
FillMaskRequest = TASK_REQUESTS["fill-mask"]
TranslateRequest = TASK_REQUESTS["translate"]
SummarizeRequest = TASK_REQUESTS["summarize"]
ClassifyRequest = TASK_REQUESTS["classify"]
NerRequest = TASK_REQUESTS["ner"]
QaRequest = TASK_REQUESTS["qa"]
EmbedRequest = TASK_REQUESTS["embed"]
RankRequest = TASK_REQUESTS["rank"]


# --- OpenAI's bodies ------------------------------------------------------------------------------------


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    include_usage: bool = False


def openai_names() -> dict[str, str]:
    """GenerateSettings field -> its name in OpenAI's bodies: OpenAI's own where it has one, else the
    field's (tfx's extras: top_k, num_beams, ...)."""
    return {f.name: f.opt.openai or f.name for f in schema(GenerateSettings) if f.opt.server and f.name not in OPENAI_DERIVED}


class OpenAIBase(BaseModel):
    """Unknown fields are ignored as OpenAI's servers do; fields tfx cannot honour are refused by
    `unsupported` rather than silently dropped."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    frequency_penalty: Optional[float] = None  # refused unless 0
    presence_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, Any]] = None


_Sampling = create_model("_Sampling", __base__=OpenAIBase, **setting_fields(GenerateSettings, openai_names(), OPENAI_DERIVED))


class SamplingRequest(_Sampling):
    """The sampling fields of every OpenAI generation body, declared once (from the settings schema), and
    their translation into GenerateSettings. Each body says what its length field is called."""

    length_field: ClassVar[str] = "max_tokens"
    prompt_param: ClassVar[str] = "prompt"  # what an error about the prompt names
    default_tokens: ClassVar[int] = OPENAI_DEFAULT_MAX_TOKENS

    def messages_in(self) -> bool:
        """True: the prompt is a conversation for the model's chat template (`conversation()`)."""
        return False

    def conversation(self) -> list[dict[str, str]]:
        raise NotImplementedError

    def prompts(self) -> list[str]:
        raise NotImplementedError

    def token_prompts(self) -> list[list[int]] | None:
        return None

    def requested_tokens(self) -> int | None:
        return self.max_new_tokens

    def length_name(self) -> str:
        return self.length_field

    def namer(self):
        """Settings field -> what this body calls it (a SettingError's words)."""
        names = {**openai_names(), "max_new_tokens": self.length_name()}
        return lambda name: names.get(name, name)

    def stops(self) -> list[str]:
        stop = self.stop
        return [] if stop is None else [stop] if isinstance(stop, str) else list(stop)

    def unsupported(self) -> str | None:
        """The name of a field set to something tfx does not do, if any."""
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0):
                return name
        return "logit_bias" if self.logit_bias else None

    logprobs_param: ClassVar[str] = "logprobs"
    format_param: ClassVar[str] = "response_format"

    def logprobs_wanted(self) -> int | None:
        """Alternatives per token the body asks log probabilities for (0: the chosen token's), or None."""
        return None

    def format_wanted(self) -> dict[str, Any] | None:
        """The body's response_format (json_object, json_schema), or None."""
        return None

    def tool_request(self) -> Any:
        """Chat's checked tools and tool_choice (serve.tools.ToolRequest), or None: no other body has tools."""
        return None

    def params(self, max_new_tokens: int) -> dict[str, Any]:
        """OpenAI's sampling rules in the CLI's terms. temperature 0 is greedy; a temperature, a top_p or
        n > 1 means sampling; with none of them the model's own generation config decides, as in the CLI."""
        n = self.num_return_sequences or 1
        if self.temperature == 0:
            do_sample = False
        elif self.temperature is not None or self.top_p is not None or n > 1:
            do_sample = True
        else:
            do_sample = None
        params = {name: getattr(self, name) for name in openai_names()}
        params.update(
            max_new_tokens=max_new_tokens,
            num_return_sequences=n if n > 1 else None,
            do_sample=do_sample,
            temperature=self.temperature if do_sample else None,
            top_p=self.top_p if do_sample else None,
            stop=tuple(s for s in self.stops() if s) or None,  # to transformers' stop_strings
            continuation_only=True,  # OpenAI returns only the new text; echo puts the prompt back
        )
        return params

    def settings(self, max_new_tokens: int, extra: dict[str, Any] | None = None) -> GenerateSettings:
        """extra: what the endpoint's decoding fields become (serve.decoding: logprobs, json_schema)."""
        return GenerateSettings.from_params({**self.params(max_new_tokens), **(extra or {})}, self.namer())  # type: ignore[return-value]


TokenIds = list[int]


class CompletionRequest(SamplingRequest):
    """OpenAI's /v1/completions body: a prompt, a list of prompts, token ids or lists of token ids."""

    prompt: Union[str, list[str], TokenIds, list[TokenIds]]
    echo: bool = False
    logprobs: PosInt = None  # the top N alternatives per token (OpenAI: at most 5)
    best_of: PosInt = None
    suffix: Optional[str] = None
    response_format: Optional[dict[str, Any]] = None  # tfx's extension: json_object / json_schema as in chat

    def token_prompts(self) -> list[list[int]] | None:
        """The prompts as token ids, when they were sent as ids."""
        p = self.prompt
        if isinstance(p, list) and p and all(isinstance(x, int) for x in p):
            return [list(p)]
        if isinstance(p, list) and p and all(isinstance(x, list) for x in p):
            return [list(x) for x in p]
        return None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def logprobs_wanted(self) -> int | None:
        return self.logprobs

    def format_wanted(self) -> dict[str, Any] | None:
        return self.response_format

    def unsupported(self) -> str | None:
        if self.best_of not in (None, 1):
            return "best_of"
        if self.suffix:
            return "suffix"
        return super().unsupported()
