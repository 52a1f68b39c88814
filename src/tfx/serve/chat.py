"""OpenAI's POST /v1/chat/completions for models whose tokenizer has a chat template. The messages are
rendered into one prompt by that template (transformers' apply_chat_template, with the model's tokenizer
loaded alone, off the event loop), then run exactly as a /v1/completions prompt: the same settings, stop
strings, usage, batching and streaming (tfx.serve.completions); only the response shapes differ."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import OrderedDict
from typing import Any, ClassVar, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tfx import loading, registry
from tfx.serve import completions, limits
from tfx.serve.app import BATCH_HEADER, ApiError, answered, read_json, sse_error, unless_gone
from tfx.serve.completions import Completion
from tfx.serve.config import MAX_SEQUENCES
from tfx.serve.config import Settings as ServerSettings
from tfx.serve.limits import check_lengths
from tfx.serve.models import Manager
from tfx.serve.schemas import SEED_MAX, CompletionRequest, PosInt, StreamOptions
from tfx.tasks import chat, generate
from tfx.tasks.base import CHARS_PER_TOKEN, context_length

MAX_MESSAGES = 1024  # messages in one conversation
MAX_PARTS = 64  # content parts in one message
TOKENIZERS_KEPT = 16  # chat models whose tokenizer the server keeps for their templates


class ContentPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: str
    text: Optional[str] = None


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")  # `name` and the like are ignored, as by OpenAI's templates
    role: str
    content: Union[str, list[ContentPart]]

    def text(self, index: int) -> str:
        """The content as one string: a string, or OpenAI's list of text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        if len(self.content) > MAX_PARTS:
            raise ApiError(400, f"messages.{index}.content has {len(self.content)} parts, over the limit of {MAX_PARTS}", "invalid_messages", "messages")
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ApiError(400, f"messages.{index}.content: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported, not {part.type!r}", "unsupported_content", "messages")
        return "\n".join(part.text for part in self.content)


class ChatRequest(BaseModel):
    """OpenAI's chat completions body. Unknown fields are ignored as OpenAI's servers do; fields tfx cannot
    honour (tools, logprobs, penalties, JSON mode) are refused by `unsupported`."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: PosInt = Field(None, ge=1)
    max_completion_tokens: PosInt = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    n: PosInt = Field(None, ge=1, le=MAX_SEQUENCES)
    seed: PosInt = Field(None, ge=0, le=SEED_MAX)
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    # Part of OpenAI's API, refused unless left at their neutral value.
    logprobs: Optional[bool] = None
    top_logprobs: PosInt = None
    frequency_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, Any]] = None
    tools: Optional[list[Any]] = None
    tool_choice: Any = None
    functions: Optional[list[Any]] = None
    function_call: Any = None
    response_format: Optional[dict[str, Any]] = None
    # tfx's own generation settings, for clients that pass extra_body.
    top_k: PosInt = Field(None, ge=0)
    num_beams: PosInt = Field(None, ge=1, le=MAX_SEQUENCES)
    repetition_penalty: Optional[float] = Field(None, gt=0)
    no_repeat_ngram_size: PosInt = Field(None, ge=0)

    SHARED: ClassVar[tuple[str, ...]] = ("model", "temperature", "top_p", "n", "seed", "stop", "stream", "stream_options", "user", "top_k", "num_beams", "repetition_penalty", "no_repeat_ngram_size")

    def unsupported(self) -> str | None:
        if self.logprobs or self.top_logprobs:
            return "logprobs" if self.logprobs else "top_logprobs"
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0):
                return name
        for name in ("logit_bias", "tools", "functions"):
            if getattr(self, name):
                return name
        if self.tool_choice not in (None, "none") or self.function_call not in (None, "none"):
            return "tool_choice" if self.tool_choice not in (None, "none") else "function_call"
        if self.response_format and self.response_format.get("type") != "text":
            return "response_format"
        return None

    def conversation(self) -> list[dict[str, str]]:
        """The messages as the chat template takes them, checked: known roles, text content, not all empty."""
        messages = []
        for i, message in enumerate(self.messages):
            if message.role not in chat.ROLES:
                raise ApiError(400, f"messages.{i}.role is {message.role[:40]!r}: tfx serve takes {', '.join(chat.ROLES)}", "invalid_role", "messages")
            messages.append({"role": message.role, "content": message.text(i)})
        if not any(m["content"].strip() for m in messages):
            raise ApiError(400, "messages: every message is empty", "invalid_messages", "messages")
        return messages

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def as_completion(self, prompt: str, max_tokens: int) -> CompletionRequest:
        """The /v1/completions request this conversation becomes once its template has rendered it."""
        fields = {name: getattr(self, name) for name in self.SHARED if getattr(self, name) is not None}
        if self.stream_options is not None:
            fields["stream_options"] = self.stream_options.model_dump()
        return CompletionRequest.model_validate({**fields, "prompt": prompt, "max_tokens": max_tokens})


class ChatCompletion(Completion):
    """A completion in the chat shapes: choices carry a message (or, streamed, a delta), objects are
    chat.completion and chat.completion.chunk."""

    def __init__(self, request: CompletionRequest, model: str):
        super().__init__(request, model)
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]

    def choice(self, index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
        if self.request.stream:
            return {"index": index, "delta": {"content": text} if text else {}, "logprobs": None, "finish_reason": finish_reason}
        return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish_reason}

    def body(self, choices: list[dict[str, Any]], with_usage: bool = True) -> dict[str, Any]:
        return {**super().body(choices, with_usage), "object": "chat.completion.chunk" if self.request.stream else "chat.completion"}

    def role_event(self, index: int = 0) -> str:
        """A streamed choice's first chunk: who speaks."""
        return self.event([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])


async def stream_chat(completion: ChatCompletion, prompt: str, stream):
    """The role chunk, then /v1/completions' events of one streamed prompt in the chat shapes."""
    yield completion.role_event()
    events = completions.stream_one(completion, prompt, stream, sse_error)
    try:
        async for event in events:
            yield event
    finally:
        await events.aclose()


class Templates:
    """Each chat model's tokenizer, loaded alone (no weights) the first time a conversation needs its
    template, kept for the next (the most recently used TOKENIZERS_KEPT). One lock: a tokenizer is not for
    two threads at once."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.tokenizers: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def render(self, prepared: loading.Prepared, messages: list[dict[str, str]]) -> tuple[str, int]:
        """The prompt and its length in tokens (on a worker thread)."""
        with self.lock:
            tokenizer = self._tokenizer(prepared)
            if not chat.has_template(tokenizer):
                message = f"{prepared.name} has no chat template (its tokenizer sets no chat_template), so it takes no messages: send a plain prompt to /v1/completions, or use a chat model"
                raise ApiError(400, message, "no_chat_template", "model")
            prompt = chat.render(tokenizer, messages, prepared.name)
            context = context_length(prepared.config)
            if context is not None and len(prompt) > context * CHARS_PER_TOKEN:  # before tokenizing all of it
                raise ApiError(400, f"the conversation is {len(prompt)} characters once rendered, far past {prepared.name}'s context of {context} tokens; send a shorter history", "context_length_exceeded", "messages")
            return prompt, len(tokenizer(prompt)["input_ids"])

    def _tokenizer(self, prepared: loading.Prepared):
        key = prepared.resolved.path
        tokenizer = self.tokenizers.get(key)
        if tokenizer is None:
            tokenizer = loading.load_tokenizer(prepared, self.settings.trust_remote_code, self.settings.verbose)
            self.tokenizers[key] = tokenizer
            while len(self.tokenizers) > TOKENIZERS_KEPT:
                self.tokenizers.popitem(last=False)
        self.tokenizers.move_to_end(key)
        return tokenizer


def reply_tokens(body: ChatRequest, prompt_tokens: int, prepared: loading.Prepared, settings: ServerSettings) -> int:
    """max_tokens, or else as many as fit: the server's cap (or the model's own generation config), or where
    the conversation leaves less room in the context, the largest power of two that fits (the batcher
    groups requests by their settings). A conversation that leaves no room is a 400, never cut silently."""
    context = context_length(prepared.config) if prepared.family != registry.ENCODER_DECODER else None
    room = None if context is None else context - prompt_tokens
    if room is not None and room < 1:
        raise ApiError(400, f"the conversation is {prompt_tokens} tokens, which fills {prepared.name}'s context of {context}; send a shorter history", "context_length_exceeded", "messages")
    wanted = body.requested_tokens()
    if wanted is not None:
        if room is not None and wanted > room:
            name = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
            raise ApiError(400, f"the conversation is {prompt_tokens} tokens and {name} is {wanted}: past {prepared.name}'s context of {context}; ask for at most {room}", "context_length_exceeded", name)
        return wanted
    own = prepared.generation_defaults.get("max_new_tokens")
    default = min(settings.max_tokens_cap, own if isinstance(own, int) and own > 0 else settings.max_tokens_cap)
    if room is None or room >= default:
        return default
    return 1 << (room.bit_length() - 1)  # a power of two: conversations of different lengths still share batches


def register(app: FastAPI, settings: ServerSettings, manager: Manager) -> None:
    templates = Templates(settings)

    @app.post("/v1/chat/completions")
    @answered
    async def create_chat_completion(request: Request):
        body: ChatRequest = await read_json(request, ChatRequest, settings.max_body_bytes)
        unsupported = body.unsupported()
        if unsupported:
            raise ApiError(400, f"{unsupported} is not supported by tfx serve", "unsupported_parameter", unsupported)
        messages = body.conversation()
        slot, prepared = await manager.slot_for(body.model, "generate")
        prompt, prompt_tokens = await asyncio.get_running_loop().run_in_executor(None, templates.render, prepared, messages)
        wanted_body = body.as_completion(prompt, reply_tokens(body, prompt_tokens, prepared, settings))
        limits.check_stops(wanted_body.stops())
        wanted = wanted_body.settings()
        check_lengths(wanted, settings.max_tokens_cap, {"max_new_tokens": "max_tokens"})
        wanted.validate(prepared.generation_defaults)  # what /v1/completions checks before queueing
        generate.check_room(generate.length_kwargs(wanted, prepared.generation_defaults), prepared.config, prepared.family)
        limits.check_budget("generate", wanted, [prompt], settings, prepared)
        slot, _ = await manager.slot_for(body.model, "generate", wanted=wanted)  # the backend that runs these settings
        completion = ChatCompletion(wanted_body, body.model)
        if body.stream and wanted.streamable(prepared.generation_defaults):
            stream = slot.stream("generate", wanted, prompt, completions.count_usage)
            return StreamingResponse(stream_chat(completion, prompt, stream), media_type="text/event-stream", headers={BATCH_HEADER: "1"})
        (outcome,) = await unless_gone(request, slot.run("generate", wanted, [prompt], completions.count_usage))
        if outcome.error is not None:
            raise ApiError(400, f"messages: {outcome.error}", "invalid_prompt", "messages")
        choices = completion.choices(prompt, outcome.result, outcome.extra, 0)
        headers = {BATCH_HEADER: str(outcome.batch)}
        if body.stream:  # several sequences: each choice is sent whole
            events = [e for c in choices for e in (completion.role_event(c["index"]), completion.event([c]))]
            if body.stream_options and body.stream_options.include_usage:
                events.append(completion.usage_event())
            return StreamingResponse(iter(events + [completions.SSE_DONE]), media_type="text/event-stream", headers=headers)
        return JSONResponse(completion.body(choices), headers=headers)

