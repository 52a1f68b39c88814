"""OpenAI's POST /v1/chat/completions for models whose tokenizer has a chat template. The messages are
rendered into one prompt by that template (transformers' apply_chat_template, with the model's tokenizer
loaded alone, off the event loop), then run by the one generation body (serve.generation) exactly as a
/v1/completions prompt: the same settings, stop strings, usage, batching and streaming; only the shapes
differ (choices carry a message, or streamed, a delta)."""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Union

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from tfx.serve import decoding
from tfx.serve.http import ApiError, answered
from tfx.serve.completions import Completion
from tfx.serve.config import Settings as ServerSettings
from tfx.serve.generation import Handler
from tfx.serve.models import Manager
from tfx.serve.schemas import PosInt, SamplingRequest
from tfx.tasks import chat

MAX_MESSAGES = 1024  # messages in one conversation
MAX_PARTS = 64  # content parts in one message
# OpenAI's roles as the chat templates know them: `developer` (what the openai SDK sends for o-series-style
# prompts) is the system message by another name.
ROLE_AS = {"developer": "system"}
TEXT_PARTS = ("text", "input_text", "output_text")  # chat's content parts, and the Responses API's


class ContentPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: str
    text: Optional[str] = None


def part_text(content: Union[str, list[ContentPart]], where: str, param: str) -> str:
    """A message's content as one string: a string, or a list of text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if len(content) > MAX_PARTS:
        raise ApiError(400, f"{where} has {len(content)} parts, over the limit of {MAX_PARTS}", "invalid_messages", param)
    for part in content:
        if part.type not in TEXT_PARTS or part.text is None:
            raise ApiError(400, f"{where}: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported, not {part.type!r}", "unsupported_content", param)
    return "\n".join(part.text for part in content)


def checked_role(role: str, where: str, param: str) -> str:
    role = ROLE_AS.get(role, role)
    if role not in chat.ROLES:
        raise ApiError(400, f"{where} is {role[:40]!r}: tfx serve takes {', '.join(chat.ROLES)} (and developer, as system)", "invalid_role", param)
    return role


def not_all_empty(messages: list[dict[str, str]], param: str) -> list[dict[str, str]]:
    if not any(m["content"].strip() for m in messages):
        raise ApiError(400, f"{param}: every message is empty", "invalid_messages", param)
    return messages


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")  # `name` and the like are ignored, as by OpenAI's templates
    role: str
    content: Union[str, list[ContentPart]]


class ChatRequest(SamplingRequest):
    """OpenAI's chat completions body: the sampling fields of every generation body, the messages, and the
    chat-only fields; what tfx cannot honour (tools, penalties) is refused by `unsupported`."""

    prompt_param: ClassVar[str] = "messages"
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: PosInt = None
    logprobs: Optional[bool] = None
    top_logprobs: PosInt = None
    tools: Optional[list[Any]] = None
    tool_choice: Any = None
    functions: Optional[list[Any]] = None
    function_call: Any = None
    response_format: Optional[dict[str, Any]] = None

    def messages_in(self) -> bool:
        return True

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_new_tokens

    def length_name(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"

    def unsupported(self) -> str | None:
        for name in ("tools", "functions"):
            if getattr(self, name):
                return name
        if self.tool_choice not in (None, "none") or self.function_call not in (None, "none"):
            return "tool_choice" if self.tool_choice not in (None, "none") else "function_call"
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", "invalid_parameter", "top_logprobs")
        return super().unsupported()

    @property
    def logprobs_param(self) -> str:
        return "top_logprobs" if self.top_logprobs is not None else "logprobs"

    def logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def format_wanted(self) -> dict[str, Any] | None:
        return self.response_format

    def conversation(self) -> list[dict[str, str]]:
        """The messages as the chat template takes them, checked: known roles, text content, not all empty."""
        messages = []
        for i, message in enumerate(self.messages):
            role = checked_role(message.role, f"messages.{i}.role", "messages")
            messages.append({"role": role, "content": part_text(message.content, f"messages.{i}.content", "messages")})
        return not_all_empty(messages, "messages")


class ChatCompletion(Completion):
    """A completion in the chat shapes: choices carry a message (or, streamed, a delta), objects are
    chat.completion and chat.completion.chunk."""

    prefix = "chatcmpl-"

    @property
    def kind(self) -> str:
        return "chat.completion.chunk" if self.body.stream else "chat.completion"

    def choice(self, index: int, text: str, finish_reason: str | None, tokens: list | None = None) -> dict[str, Any]:
        lp = {"content": decoding.chat_content(tokens)} if tokens is not None else None
        if self.body.stream:
            return {"index": index, "delta": {"content": text} if text else {}, "logprobs": lp, "finish_reason": finish_reason}
        return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": lp, "finish_reason": finish_reason}

    def echoed(self, prompt: str) -> str:
        return ""

    def role_event(self, index: int = 0) -> str:
        """A streamed choice's first chunk: who speaks."""
        return self.event([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])

    def whole_events(self, outcomes: list) -> list[str]:
        events = [e for c in self.choices(outcomes) for e in (self.role_event(c["index"]), self.event([c]))]
        return events + ([self.usage_event()] if self.include_usage() else [])

    def opening(self) -> list[str]:
        return [self.role_event()]


def register(app: FastAPI, settings: ServerSettings, manager: Manager, handler: Handler | None = None) -> None:
    handler = handler or Handler(settings, manager)

    @app.post("/v1/chat/completions")
    @answered
    async def create_chat_completion(request: Request):
        return await handler.answer(request, ChatRequest, ChatCompletion)
