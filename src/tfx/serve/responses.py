"""OpenAI's POST /v1/responses (what `client.responses.create` and `llm --responses` send) on the one
generation body (serve.generation): `input` as a string or a list of messages, `instructions` as the system
message, `max_output_tokens`, `text.format` for JSON output; answered as a `response` object, or streamed
as the typed events the openai SDK parses (response.created ... response.output_text.delta ...
response.completed), each delta with its tokens' logprobs when asked. A plain-string input without
instructions to a model that has no chat template is a text prompt, continued as /v1/completions would."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Optional, Union

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, PrivateAttr

from tfx.serve import decoding
from tfx.serve.http import ApiError, answered, sse_error
from tfx.serve.chat import ContentPart, checked_role, not_all_empty, part_text
from tfx.serve.config import Settings as ServerSettings
from tfx.serve.events import named_sse
from tfx.serve.generation import Handler, Shape, pieces
from tfx.serve.models import Manager
from tfx.serve.schemas import PosInt, SamplingRequest

MAX_ITEMS = 1024  # input items in one request
NO_TEMPLATE = "no_chat_template"  # the code of generation's 400 for messages to a model without a template


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
    _as_text: bool = PrivateAttr(False)  # a plain string for a model without a chat template

    def plain_text(self) -> bool:
        """A plain string and no instructions: text a template-less model can continue."""
        return isinstance(self.input, str) and not self.instructions

    def as_text(self) -> None:
        self._as_text = True

    def messages_in(self) -> bool:
        return not self._as_text

    def prompts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else []

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
        """The one usage (generation.Shape's) under the Responses API's names."""
        usage = super().usage()
        renamed: dict[str, Any] = {
            "input_tokens": usage.pop("prompt_tokens"),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.pop("completion_tokens"),
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        return {**renamed, **usage}  # total_tokens, and truncated where the prompt was cut

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
        ((text, reason, tokens),) = decoding.settle(self, outcome)
        return self.finished(text, reason, tokens)

    def event(self, kind: str, **fields: Any) -> str:
        self.sequence += 1
        return named_sse(kind, {"type": kind, "sequence_number": self.sequence - 1, **fields})

    def whole_events(self, outcomes: list) -> list[str]:
        body = self.answer(outcomes)
        part = body["output"][0]["content"][0]
        opening = self.opening()  # numbered first
        delta = [self.event("response.output_text.delta", output_index=0, item_id=self.item_id, content_index=0, delta=part["text"], logprobs=part["logprobs"])] if part["text"] else []
        return [*opening, *delta, *self.closing(part["text"], body)]

    def opening(self) -> list[str]:
        where = {"output_index": 0, "item_id": self.item_id, "content_index": 0}
        return [
            self.event("response.created", response=self.response("in_progress", [])),
            self.event("response.in_progress", response=self.response("in_progress", [])),
            self.event("response.output_item.added", output_index=0, item=self.message("in_progress", [])),
            self.event("response.content_part.added", part=self.part(""), **where),
        ]

    def text_events(self, deltas: list[tuple[str, list | None]]) -> list[str]:
        """One output_text.delta per (text, logprob entries): the entries of the tokens that text holds
        (a last piece may bring entries and no text: those the result holds beyond the streamed ones)."""
        return [
            self.event("response.output_text.delta", output_index=0, item_id=self.item_id, content_index=0, delta=d, logprobs=decoding.chat_content(tokens) or [])
            for d, tokens in deltas if d or tokens
        ]  # fmt: skip

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
                for event in self.text_events([(value[0], getattr(value[0], "logprobs", None))]):
                    yield event
            elif kind == "error":
                yield sse_error(value[0])
                return
            else:
                reason, outcome = value
                settled = decoding.settle(self, outcome)
                tokens = settled[0][2] if settled else None
                whole = "".join(text)
                for event in self.closing(whole, self.finished(whole, reason, tokens)):
                    yield event


class ResponsesHandler(Handler):
    """The one generation body (sharing the app's handler's tokenizers), with the Responses API's one
    choice of its own: a plain-string input without instructions to a model that has no chat template is
    a text prompt; messages or instructions to such a model stay a 400 that names the fix."""

    def __init__(self, shared: Handler):
        super().__init__(shared.settings, shared.manager)
        self.tokenizers = shared.tokenizers

    async def prepare(self, body: ResponsesRequest):  # type: ignore[override]
        try:
            return await super().prepare(body)
        except ApiError as err:
            if err.code != NO_TEMPLATE or not body.messages_in():
                raise
            if not body.plain_text():
                what = "instructions" if body.instructions else "a list of messages"
                raise ApiError(400, f"{body.model} has no chat template (its tokenizer sets no chat_template), so it takes no {what}: send input as a plain string without instructions to have it continued as text, or use a chat model", NO_TEMPLATE, "input") from None
        body.as_text()
        return await super().prepare(body)


def register(app: FastAPI, settings: ServerSettings, manager: Manager, handler: Handler | None = None) -> None:
    handler = ResponsesHandler(handler or Handler(settings, manager))

    @app.post("/v1/responses")
    @answered
    async def create_response(request: Request):
        return await handler.answer(request, ResponsesRequest, Response)
