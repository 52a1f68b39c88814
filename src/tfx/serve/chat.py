"""OpenAI's POST /v1/chat/completions for models whose tokenizer has a chat template. The messages are
rendered into one prompt by that template (transformers' apply_chat_template, with the model's tokenizer
loaded alone, off the event loop), then run by the one generation body (serve.generation) exactly as a
/v1/completions prompt: the same settings, stop strings, usage, batching and streaming; only the shapes
differ (choices carry a message, or streamed, a delta)."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Optional, Union

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from tfx.serve import decoding, tools
from tfx.serve.events import SSE_DONE
from tfx.serve.http import ApiError, answered, sse_error
from tfx.serve.completions import Completion
from tfx.serve.config import Settings as ServerSettings
from tfx.serve.generation import Handler, pieces
from tfx.serve.models import Manager
from tfx.serve.schemas import PosInt, SamplingRequest
from tfx.tasks import chat

MAX_MESSAGES = 1024  # messages in one conversation
MAX_PARTS = 64  # content parts in one message
MAX_CALLS = 64  # tool calls in one assistant message of the history
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


def checked_role(role: str, where: str, param: str, roles: tuple[str, ...] = chat.ROLES) -> str:
    role = ROLE_AS.get(role, role)
    if role not in roles:
        raise ApiError(400, f"{where} is {role[:40]!r}: tfx serve takes {', '.join(roles)} (and developer, as system)", "invalid_role", param)
    return role


def not_all_empty(messages: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    if not any((m.get("content") or "").strip() or m.get("tool_calls") for m in messages):
        raise ApiError(400, f"{param}: every message is empty", "invalid_messages", param)
    return messages


class CalledFunction(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    name: str = Field(max_length=64)
    arguments: str


class ToolCall(BaseModel):
    """A call the assistant made, as it comes back in the history."""

    model_config = ConfigDict(strict=True, extra="ignore")
    id: Optional[str] = Field(default=None, max_length=256)
    type: str = "function"
    function: CalledFunction


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")  # `name` and the like are ignored, as by OpenAI's templates
    role: str
    content: Union[str, list[ContentPart], None] = None
    tool_calls: Optional[list[ToolCall]] = Field(default=None, max_length=MAX_CALLS)
    tool_call_id: Optional[str] = Field(default=None, max_length=256)

    def rendered(self, i: int) -> dict[str, Any]:
        """The message as the chat template takes it: an assistant's calls with their arguments as objects
        (what Hermes/Qwen-style templates write), a tool's result with its call's id."""
        where = f"messages.{i}"
        role = checked_role(self.role, f"{where}.role", "messages", chat.ROLES + ("tool",))
        if self.content is None and not (role == "assistant" and self.tool_calls):
            raise ApiError(400, f"{where}.content is missing (only an assistant message with tool_calls may leave it out)", "invalid_messages", "messages")
        content = None if self.content is None else part_text(self.content, f"{where}.content", "messages")
        message: dict[str, Any] = {"role": role, "content": content}
        if self.tool_calls and role == "assistant":
            message["tool_calls"] = [self.call(c, f"{where}.tool_calls.{j}") for j, c in enumerate(self.tool_calls)]
        if role == "tool" and self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message

    @staticmethod
    def call(call: ToolCall, where: str) -> dict[str, Any]:
        try:
            arguments = json.loads(call.function.arguments) if call.function.arguments.strip() else {}
        except ValueError:
            raise ApiError(400, f"{where}.function.arguments is not JSON", "invalid_messages", "messages") from None
        return {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": arguments}}


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
        if self.functions:  # the deprecated form of tools
            return "functions"
        if self.function_call not in (None, "none"):
            return "function_call"
        self.tool_request()
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

    def tool_request(self) -> tools.ToolRequest | None:
        """The checked tools and tool_choice (a 400 for anything malformed), or None without tools."""
        return tools.checked(self.tools, self.tool_choice)

    def conversation(self) -> list[dict[str, Any]]:
        """The messages as the chat template takes them, checked: known roles (and tool results), text
        content, an assistant's tool calls, not all empty."""
        return not_all_empty([message.rendered(i) for i, message in enumerate(self.messages)], "messages")


class ChatCompletion(Completion):
    """A completion in the chat shapes: choices carry a message (or, streamed, a delta), objects are
    chat.completion and chat.completion.chunk."""

    prefix = "chatcmpl-"

    @property
    def kind(self) -> str:
        return "chat.completion.chunk" if self.body.stream else "chat.completion"

    def choice(self, index: int, text: str, finish_reason: str | None, tokens: list | None = None) -> dict[str, Any]:
        lp = {"content": decoding.chat_content(tokens)} if tokens is not None else None
        reader = self.generation.tools
        if reader is not None and finish_reason is not None:  # a whole reply: read for tool calls
            content, calls = reader.whole(text)
            if calls:
                reason = "tool_calls" if finish_reason == "stop" or reader.kind == "forced" else finish_reason
                if self.body.stream:
                    delta = {**({"content": content} if content else {}), "tool_calls": [{"index": k, **c} for k, c in enumerate(calls)]}
                    return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": reason}
                return {"index": index, "message": {"role": "assistant", "content": content, "tool_calls": calls}, "logprobs": lp, "finish_reason": reason}
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

    async def events(self, stream):
        """One streamed reply; with tools, read as it comes: content deltas, then each tool call as OpenAI
        streams it (index, id, type and name first, then its arguments), finish_reason tool_calls."""
        if self.generation.tools is None:
            async for event in super().events(stream):
                yield event
            return
        reading = self.generation.tools.stream()
        yield self.role_event()
        wait = self.include_usage() or self.body.logprobs_wanted() is not None
        held: list | None = None  # the log-probability entries not yet sent (they go with the next chunk)
        async for kind, *value in pieces(self.generation, stream, wait):
            if kind == "error":
                yield sse_error(value[0])
                return
            if kind == "text":
                entries = getattr(value[0], "logprobs", None)
                held = held if entries is None else (held or []) + entries
                deltas = reading.feed(str(value[0]))
            else:
                reason, outcome = value
                decoding.settle(self, outcome)
                deltas = reading.finish()
            for what, delta in deltas:
                lp, held = ({"content": decoding.chat_content(held)} if held is not None else None), None
                yield self.event([{"index": 0, "delta": {"content": delta} if what == "content" else {"tool_calls": delta}, "logprobs": lp, "finish_reason": None}])
            if kind == "done":
                reason = "tool_calls" if reading.calls and (reason == "stop" or self.generation.tools.kind == "forced") else reason
                lp = {"content": decoding.chat_content(held)} if held is not None else None
                yield self.event([{"index": 0, "delta": {}, "logprobs": lp, "finish_reason": reason}])
        if self.include_usage():
            yield self.usage_event()
        yield SSE_DONE


def register(app: FastAPI, settings: ServerSettings, manager: Manager, handler: Handler | None = None) -> None:
    handler = handler or Handler(settings, manager)

    @app.post("/v1/chat/completions")
    @answered
    async def create_chat_completion(request: Request):
        return await handler.answer(request, ChatRequest, ChatCompletion)
