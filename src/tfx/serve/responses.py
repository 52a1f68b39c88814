"""OpenAI's POST /v1/responses (what `client.responses.create` and `llm --responses` send) on the one
generation body (serve.generation): `input` as a string or a list of messages, `instructions` as the system
message, `max_output_tokens`, `text.format` for JSON output; answered as a `response` object, or streamed
as the typed events the openai SDK parses (response.created ... response.output_text.delta ...
response.completed)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Optional, Union

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict

from tfx.serve import decoding
from tfx.serve.http import ApiError, answered, sse_error
from tfx.serve.chat import ContentPart, checked_role, not_all_empty, part_text
from tfx.serve.config import Settings as ServerSettings
from tfx.serve.events import named_sse
from tfx.serve.generation import Handler, Shape, pieces
from tfx.serve.models import Manager
from tfx.serve.schemas import PosInt, SamplingRequest

MAX_ITEMS = 1024  # input items in one request


class InputItem(BaseModel):
    """An input message: {role, content} (EasyInputMessage) or {type: "message", role, content}."""

    model_config = ConfigDict(strict=True, extra="ignore")
    type: str = "message"
    role: str
    content: Union[str, list[ContentPart]]


class TextConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    format: Optional[dict[str, Any]] = None  # {"type": "text" | "json_object" | "json_schema", name, schema, strict}


class ResponsesRequest(SamplingRequest):
    """The Responses API's body: the sampling fields every generation body shares, the input and the
    responses-only fields; what tfx cannot do (tools, a stored previous response) is refused."""

    length_field: ClassVar[str] = "max_output_tokens"
    prompt_param: ClassVar[str] = "input"
    format_param: ClassVar[str] = "text.format"
    input: Union[str, list[InputItem]]
    instructions: Optional[str] = None
    max_output_tokens: PosInt = None
    text: Optional[TextConfig] = None
    top_logprobs: PosInt = None
    include: Optional[list[str]] = None
    tools: Optional[list[Any]] = None
    tool_choice: Any = None
    previous_response_id: Optional[str] = None
    metadata: Optional[dict[str, Any]] = None

    def messages_in(self) -> bool:
        return True

    def requested_tokens(self) -> int | None:
        return self.max_output_tokens if self.max_output_tokens is not None else self.max_new_tokens

    def length_name(self) -> str:
        return "max_output_tokens" if self.max_output_tokens is not None or self.max_new_tokens is None else "max_tokens"

    def unsupported(self) -> str | None:
        if self.tools:
            return "tools"
        if self.tool_choice not in (None, "none", "auto"):
            return "tool_choice"
        if self.previous_response_id:
            return "previous_response_id"  # tfx stores no responses
        if (self.num_return_sequences or 1) > 1:
            return "n"
        return super().unsupported()

    @property
    def logprobs_param(self) -> str:
        return "top_logprobs"

    def logprobs_wanted(self) -> int | None:
        asked = "message.output_text.logprobs" in (self.include or [])
        return self.top_logprobs if self.top_logprobs is not None else (0 if asked else None)

    def format_wanted(self) -> dict[str, Any] | None:
        return self.text.format if self.text is not None else None

    def conversation(self) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        if isinstance(self.input, str):
            return not_all_empty(messages + [{"role": "user", "content": self.input}], "input")
        if len(self.input) > MAX_ITEMS:
            raise ApiError(400, f"input has {len(self.input)} items, over the limit of {MAX_ITEMS}", "invalid_input", "input")
        for i, item in enumerate(self.input):
            if item.type != "message":
                raise ApiError(400, f"input.{i}.type is {item.type[:40]!r}: tfx serve takes messages", "unsupported_input", "input")
            role = checked_role(item.role, f"input.{i}.role", "input")
            messages.append({"role": role, "content": part_text(item.content, f"input.{i}.content", "input")})
        return not_all_empty(messages, "input")


class Response(Shape):
    """One response object, whole or as its stream of typed events."""

    def __init__(self, generation):
        super().__init__(generation)
        self.id = "resp_" + uuid.uuid4().hex[:24]
        self.item_id = "msg_" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.sequence = 0

    def usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.truncated:
            usage["truncated"] = True
        return usage

    def part(self, text: str, tokens: list | None = None) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": decoding.chat_content(tokens) or []}

    def message(self, status: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": parts}

    def response(self, status: str, output: list[dict[str, Any]], reason: str | None = None) -> dict[str, Any]:
        body = self.body
        fmt = body.format_wanted() or {"type": "text"}
        out = {
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "model": self.generation.model,
            "output": output, "error": None, "incomplete_details": {"reason": "max_output_tokens"} if reason == "length" else None,
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens, "metadata": body.metadata or {},
            "parallel_tool_calls": False, "temperature": body.temperature, "top_p": body.top_p, "tool_choice": "none", "tools": [],
            "text": {"format": fmt}, "top_logprobs": body.top_logprobs, "usage": self.usage() if status != "in_progress" else None,
        }  # fmt: skip
        if status != "in_progress":
            out["completed_at"] = int(time.time())
        return out

    def finished(self, text: str, reason: str, tokens: list | None) -> dict[str, Any]:
        status = "incomplete" if reason == "length" else "completed"
        return self.response(status, [self.message(status, [self.part(text, tokens)])], reason)

    def answer(self, outcomes: list) -> dict[str, Any]:
        (outcome,) = outcomes
        self.count(outcome.result, outcome.extra, 0)
        ((text, reason, tokens),) = self.sequences(outcome.result, outcome.extra)
        return self.finished(text, reason, tokens)

    def event(self, kind: str, **fields: Any) -> str:
        self.sequence += 1
        return named_sse(kind, {"type": kind, "sequence_number": self.sequence - 1, **fields})

    def whole_events(self, outcomes: list) -> list[str]:
        body = self.answer(outcomes)
        text = body["output"][0]["content"][0]["text"]
        return [*self.opening(), *self.text_events([text]), *self.closing(text, body)]

    def opening(self) -> list[str]:
        where = {"output_index": 0, "item_id": self.item_id, "content_index": 0}
        return [
            self.event("response.created", response=self.response("in_progress", [])),
            self.event("response.in_progress", response=self.response("in_progress", [])),
            self.event("response.output_item.added", output_index=0, item=self.message("in_progress", [])),
            self.event("response.content_part.added", part=self.part(""), **where),
        ]

    def text_events(self, deltas: list[str]) -> list[str]:
        return [self.event("response.output_text.delta", output_index=0, item_id=self.item_id, content_index=0, delta=d, logprobs=[]) for d in deltas if d]

    def closing(self, text: str, body: dict[str, Any]) -> list[str]:
        where = {"output_index": 0, "item_id": self.item_id, "content_index": 0}
        item = body["output"][0]
        part = item["content"][0]
        return [
            self.event("response.output_text.done", text=text, logprobs=part["logprobs"], **where),
            self.event("response.content_part.done", part=part, **where),
            self.event("response.output_item.done", output_index=0, item=item),
            self.event("response.incomplete" if body["status"] == "incomplete" else "response.completed", response=body),
        ]

    async def events(self, stream) -> AsyncIterator[str]:
        for event in self.opening():
            yield event
        text = []
        async for kind, *value in pieces(self.generation, stream, wait=True):  # response.completed carries usage
            if kind == "text":
                text.append(value[0])
                for event in self.text_events(value):
                    yield event
            elif kind == "error":
                yield sse_error(value[0])
                return
            else:
                reason, outcome = value
                tokens = None
                if outcome is not None:
                    self.count(outcome.result, outcome.extra, 0)
                    tokens = self.sequences(outcome.result, outcome.extra)[0][2]
                whole = "".join(text)
                for event in self.closing(whole, self.finished(whole, reason, tokens)):
                    yield event


def register(app: FastAPI, settings: ServerSettings, manager: Manager, handler: Handler | None = None) -> None:
    handler = handler or Handler(settings, manager)

    @app.post("/v1/responses")
    @answered
    async def create_response(request: Request):
        return await handler.answer(request, ResponsesRequest, Response)
