"""One generation body for OpenAI's /v1/completions, /v1/chat/completions and /v1/responses (as mlx-lm turns
chat and text into one request and one handler): the prompts (texts, token ids, or messages rendered by the
model's chat template), each cut to what the model can read BEFORE it is tokenized, the settings from the
one sampling declaration (serve.schemas), every check before any work is queued (errors name the body's
own fields, never a CLI flag), then the batcher's run or stream. Each endpoint only shapes the answer (a
`Shape`: completions, chat, responses)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from tfx import loading, registry
from tfx.results import GenerateResult, Result
from tfx.serve import decoding, limits, tools
from tfx.serve.http import BATCH_HEADER, ApiError, read_json, unless_gone
from tfx.serve.config import MAX_SEQUENCES
from tfx.serve.config import Settings as ServerSettings
from tfx.serve.models import Manager
from tfx.serve.schemas import SamplingRequest
from tfx.serve.events import SSE_DONE
from tfx.serve.stops import StopScanner, cut_at_stop
from tfx.serve.work import Piece
from tfx.settings import SettingError
from tfx.spec import GenerateSettings
from tfx.tasks import chat, generate
from tfx.tasks.base import context_length, prompt_chars

TOKENIZERS_KEPT = 16  # models whose tokenizer the server keeps for templates and token-id prompts

@dataclass
class Usage:
    """What one text's generation counted, on the model's thread: the prompt tokens the model read (after
    the cut) and the tokens of each returned sequence."""

    prompt_tokens: int
    sequence_tokens: list[int]
    truncated: bool = False


def count_usage(task, text: str, result: GenerateResult) -> Usage:
    """The batcher's finish hook: token counts with the task's own tokenizer (the fast one on the fast GPT-2
    path). `text` was cut before it was queued, so this never tokenizes more than the model could read."""
    tokenizer = task.tokenizer
    sequences = result.outputs or [result.output]
    if len(sequences) == 1:
        per_sequence = [result.generated_tokens]
    else:  # several sequences: sampling or beams, never the fast path, so transformers' tokenizer
        per_sequence = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sequences]
    read = len(tokenizer(text)["input_ids"]) - (getattr(result, "dropped_tokens", 0) or 0)
    return Usage(read, per_sequence, bool(result.truncated))


class Tokenizers:
    """Each generating model's tokenizer, loaded alone (no weights) the first time a conversation needs its
    template or a token-id prompt its vocabulary, kept for the next (the TOKENIZERS_KEPT most recently
    used). One lock: a tokenizer is not for two threads at once. Runs on worker threads."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.tokenizers: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def has_template(self, prepared: loading.Prepared) -> bool:
        """Whether the model's tokenizer has a chat template (so it takes messages)."""
        with self.lock:
            return chat.has_template(self._tokenizer(prepared))

    def render(self, prepared: loading.Prepared, messages: list[dict[str, Any]], param: str, request: tools.ToolRequest | None = None) -> tuple[str, int]:
        """The conversation's prompt and its length in tokens. Past what the model can read it is a 400,
        found before tokenizing: a conversation is never cut silently."""
        prompt, tokens, _ = self.render_tools(prepared, messages, param, request)
        return prompt, tokens

    def render_tools(self, prepared: loading.Prepared, messages: list[dict[str, Any]], param: str, request: tools.ToolRequest | None) -> tuple[str, int, tools.Reader | None]:
        """render, with the body's tools given to the template, and the reader of the reply's tool calls
        (None without tools). Tools for a template that takes none are a 400 naming the fix."""
        with self.lock:
            tokenizer = self._tokenizer(prepared)
            if not chat.has_template(tokenizer):
                message = f"{prepared.name} has no chat template (its tokenizer sets no chat_template), so it takes no messages: send a plain prompt to /v1/completions, or use a chat model"
                raise ApiError(400, message, "no_chat_template", "model")
            if request is not None and not tools.takes_tools(tokenizer):
                raise ApiError(400, f"{prepared.name}'s chat template takes no tools: send the request without tools, or use a model whose template takes them", "unsupported_tools", "tools")
            if any(m["role"] == "tool" or m.get("tool_calls") for m in messages) and not tools.takes_tools(tokenizer):
                raise ApiError(400, f"messages hold tool calls or tool results, but {prepared.name}'s chat template takes no tools: send only system, user and assistant text", "invalid_role", param)
            prompt = chat.render(tokenizer, messages, prepared.name, tools=request.template_tools() if request else None)
            reader = None
            if request is not None and request.choice != "none":
                reader = tools.reader_for(tokenizer, prompt, request, prepared.name)
                if reader.kind == "forced":  # the grammar writes the call's JSON after the opening marker
                    prompt += tools.OPEN
            context = context_length(prepared.config)
            if context is not None and len(prompt) > prompt_chars(prepared.config):
                raise ApiError(400, f"the conversation is {len(prompt)} characters once rendered, far past {prepared.name}'s context of {context} tokens; send a shorter history", "context_length_exceeded", param)
            return prompt, len(tokenizer(prompt)["input_ids"]), reader

    def decode(self, prepared: loading.Prepared, rows: list[list[int]], param: str = "prompt") -> list[str]:
        """Token-id prompts as text, each id checked against the vocabulary (the model re-encodes the text)."""
        with self.lock:
            tokenizer = self._tokenizer(prepared)
            vocab = len(tokenizer)
            for i, row in enumerate(rows):
                if not row:
                    raise ApiError(400, f"{param}[{i}] is an empty list of token ids", "invalid_prompt", param)
                bad = next((t for t in row if not 0 <= t < vocab), None)
                if bad is not None:
                    raise ApiError(400, f"{param} holds token id {bad}, outside {prepared.name}'s vocabulary of {vocab} (0 to {vocab - 1})", "invalid_prompt", param)
            return [tokenizer.decode(row) for row in rows]

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


@dataclass
class Generation:
    """One request ready to run: its prompts (cut to what the model reads), their dropped characters, the
    settings, and the model."""

    body: SamplingRequest
    model: str
    prompts: list[str]
    settings: GenerateSettings
    prepared: loading.Prepared
    slot: Any
    cut: list[int] = field(default_factory=list)
    tools: Any = None  # a tools.Reader: the reply is read for tool calls (chat with tools)

    @property
    def max_tokens(self) -> int:
        return self.settings.max_new_tokens


class Shape:
    """How an endpoint answers (completions, chat, responses): subclasses build the JSON body and the
    events of a stream from a Generation's outcomes."""

    def __init__(self, generation: Generation):
        self.generation = generation
        self.body = generation.body
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.truncated = False

    def count(self, result: Result, usage: Usage | None, index: int) -> None:
        self.prompt_tokens += usage.prompt_tokens if usage else 0
        self.completion_tokens += result.tokens
        self.truncated = self.truncated or bool(usage and usage.truncated) or bool(self.generation.cut and self.generation.cut[index])

    def sequences(self, result: Result, usage: Usage | None) -> list[tuple[str, str, Any]]:
        """(text, finish reason, logprobs) per returned sequence, cut at the first stop string."""
        texts = getattr(result, "outputs", None) or [result.output]
        counts = usage.sequence_tokens if usage else [0] * len(texts)
        out = []
        for j, (text, tokens) in enumerate(zip(texts, counts)):
            text, stopped = cut_at_stop(text, self.body.stops())
            reasons = getattr(result, "finish_reasons", None)  # the task's own word (a JSON grammar's end), where it says
            reason = "stop" if stopped else reasons[j] if reasons and j < len(reasons) else self.finish_reason(False, tokens)
            out.append((text, reason, decoding.tokens_of(result, j, text)))
        return out

    def finish_reason(self, stopped: bool, tokens: int) -> str:
        return "length" if not stopped and tokens >= self.generation.max_tokens else "stop"

    def usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": self.prompt_tokens + self.completion_tokens}
        if self.truncated:  # the prompt was longer than the model reads: its start was cut
            usage["truncated"] = True
        return usage

    def answer(self, outcomes: list) -> dict[str, Any]:
        raise NotImplementedError

    def whole_events(self, outcomes: list) -> list[str]:
        """A stream of requests that cannot stream token by token (several prompts or sequences)."""
        raise NotImplementedError

    def events(self, stream) -> AsyncIterator[str]:
        raise NotImplementedError


async def pieces(generation: Generation, stream, wait: bool) -> AsyncIterator[tuple[str, Any]]:
    """One streamed prompt as ('text', Piece)... then ('done', reason, outcome) or ('error', message): the
    pieces held back where a stop string may begin, each with the logprob entries of its tokens (Piece's
    logprobs: None when not asked; a last Piece("", entries) brings any the result holds beyond them).
    wait: read on to the outcome (its usage) after a stop string; otherwise the stream ends there (closing
    it stops the generation)."""
    scanner = StopScanner(generation.body.stops())
    tokens = decoding.StreamedTokens()
    sent: list[str] = []

    def piece(text: str) -> Piece:
        sent.append(text)
        return Piece(text, tokens.out(text))

    try:
        async for kind, value in stream.events():
            if kind == "text" and not scanner.hit:
                tokens.add(value)
                text = scanner.feed(value)
                if text:
                    yield "text", piece(text)
                if scanner.hit and not wait:
                    yield "done", "stop", None
                    return
            elif kind == "error":
                yield "error", value
                return
            elif kind == "done" and value is not None:  # a batcher Outcome
                if value.error is not None:
                    yield "error", value.error
                    return
                if not scanner.hit:
                    rest = scanner.flush()
                    if rest:
                        yield "text", piece(rest)
                last = tokens.rest(value.result, "".join(sent))
                if last:
                    yield "text", Piece("", last)
                reasons = getattr(value.result, "finish_reasons", None)  # the task's own word (a JSON grammar's end)
                reason = "stop" if scanner.hit else reasons[0] if reasons else "length" if value.result.tokens >= generation.max_tokens else "stop"
                yield "done", reason, value
    finally:
        stream.close()


class Handler:
    """The generation endpoints' one body: read, check, cut, run, and hand the outcomes to the Shape."""

    def __init__(self, settings: ServerSettings, manager: Manager):
        self.settings = settings
        self.manager = manager
        self.tokenizers = Tokenizers(settings)

    async def answer(self, request: Request, schema: type[SamplingRequest], shape: type[Shape]):
        body = await read_json(request, schema, self.settings.max_body_bytes)
        generation = await self.prepare(body)
        answer = shape(generation)
        prompts, settings, slot = generation.prompts, generation.settings, generation.slot
        headers = {BATCH_HEADER: "1"}
        if body.stream and len(prompts) == 1 and settings.streamable(generation.prepared.generation_defaults):
            stream = slot.stream("generate", settings, prompts[0], count_usage)
            return StreamingResponse(answer.events(stream), media_type="text/event-stream", headers=headers)
        outcomes = await unless_gone(request, slot.run("generate", settings, prompts, count_usage))
        for prompt, outcome in zip(prompts, outcomes):
            if outcome.error is not None:
                raise ApiError(400, f"{body.prompt_param}: {outcome.error}", "invalid_prompt", body.prompt_param)
        headers = {BATCH_HEADER: str(max(o.batch for o in outcomes))}
        if body.stream:  # several prompts or sequences: each choice is sent whole
            return StreamingResponse(iter(answer.whole_events(outcomes) + [SSE_DONE]), media_type="text/event-stream", headers=headers)
        return JSONResponse(answer.answer(outcomes), headers=headers)

    async def prepare(self, body: SamplingRequest) -> Generation:
        """Everything before the work is queued, in the order that needs least: the body's own checks,
        the model's configs, the prompts and their cut, the settings, every bound."""
        unsupported = body.unsupported()
        if unsupported:
            raise ApiError(400, f"{unsupported} is not supported by tfx serve", "unsupported_parameter", unsupported)
        param = body.prompt_param
        if body.messages_in():
            messages = body.conversation()
            request = body.tool_request()
            if request is not None and request.forced and body.format_wanted():
                raise ApiError(400, "tool_choice forces a call, which cannot be combined with response_format: send one of them", "invalid_parameter", "tool_choice")
            slot, prepared = await self.manager.slot_for(body.model, "generate")
            prompt, tokens, reader = await asyncio.get_running_loop().run_in_executor(None, self.tokenizers.render_tools, prepared, messages, param, request)
            prompts, cut = [prompt], [0]
            room_check(body, tokens, prepared, param)
            max_new = body.requested_tokens()
            max_new = reply_tokens(tokens, prepared, self.settings, param) if max_new is None else max_new
        else:
            ids = body.token_prompts()
            texts = body.prompts() if ids is None else None
            if texts is not None and (not texts or any(not p for p in texts)):
                raise ApiError(400, f"{param} is empty", "invalid_prompt", param)
            limits.check_inputs(len(texts if ids is None else ids), self.settings, param)
            slot, prepared = await self.manager.slot_for(body.model, "generate")
            if ids is not None:
                texts = await asyncio.get_running_loop().run_in_executor(None, self.tokenizers.decode, prepared, ids, param)
            prompts, cut = cut_prompts(texts, prepared)
            max_new = body.requested_tokens()
            max_new = body.default_tokens if max_new is None else max_new
            reader = None
        forced = body.tool_request().call_schema() if reader is not None and reader.kind == "forced" else None
        settings = self.settings_of(body, max_new, prepared, prompts, forced)
        slot, _ = await self.manager.slot_for(body.model, "generate", wanted=settings)  # the backend that runs them
        return Generation(body, body.model, prompts, settings, prepared, slot, cut, reader)

    def settings_of(self, body: SamplingRequest, max_new: int, prepared: loading.Prepared, prompts: list[str], call_schema: str | None = None) -> GenerateSettings:
        """call_schema: a forced tool call's JSON Schema (constrained decoding, as response_format's)."""
        namer = body.namer()
        limits.check_stops(body.stops())
        extra = {**decoding.logprob_params(body.logprobs_wanted(), body.logprobs_param), **decoding.format_params(body.format_wanted(), body.format_param)}
        if call_schema is not None:
            extra.update(decoding.format_params({"type": "json_schema", "json_schema": {"schema": json.loads(call_schema)}}, "tool_choice"))
        try:
            settings = body.settings(max_new, extra)
            limits.check_lengths(settings, self.settings.max_tokens_cap, {"max_new_tokens": body.length_name()})
            for key in ("num_return_sequences", "num_beams"):  # each multiplies the batch: the server's own bound
                value = getattr(settings, key)
                if value is not None and value > MAX_SEQUENCES:
                    raise ApiError(400, f"{namer(key)} is {value}, over this server's limit of {MAX_SEQUENCES}", "invalid_parameter", namer(key))
            settings.validate(prepared.generation_defaults)
        except SettingError as err:
            raise setting_error(err, namer) from None
        context = None if prepared.family == registry.ENCODER_DECODER else context_length(prepared.config)
        if context is not None and settings.max_new_tokens >= context:
            name = body.length_name()
            raise ApiError(400, f"{name} is {settings.max_new_tokens}, which leaves no room for the prompt in {prepared.name}'s context of {context} tokens; ask for at most {context - 1}", "context_length_exceeded", name)
        generate.check_room(generate.length_kwargs(settings, prepared.generation_defaults), prepared.config, prepared.family)
        limits.check_budget("generate", settings, prompts, self.settings, prepared)
        return settings


def setting_error(err: SettingError, namer) -> ApiError:
    """A bad setting as OpenAI answers it: a 400 naming the body's own field (param)."""
    message, hint = err.render(namer)
    param = namer(err.fields[0]) if err.fields else None
    return ApiError(400, message + (f" {hint}" if hint else ""), "invalid_parameter", param)


def cut_prompts(texts: list[str], prepared: loading.Prepared) -> tuple[list[str], list[int]]:
    """Each prompt cut to the characters the model can read, keeping its end where generation goes on,
    before anything tokenizes it (an 8 MB prompt is never tokenized whole); and the characters dropped."""
    limit = prompt_chars(prepared.config)
    cut = [max(len(t) - limit, 0) for t in texts]
    return [t[-limit:] if c else t for t, c in zip(texts, cut)], cut


def room_check(body: SamplingRequest, prompt_tokens: int, prepared: loading.Prepared, param: str) -> None:
    """A conversation that leaves no room, or less than the reply asked for, is a 400, never cut silently."""
    context = context_length(prepared.config) if prepared.family != registry.ENCODER_DECODER else None
    if context is None:
        return
    room = context - prompt_tokens
    if room < 1:
        raise ApiError(400, f"the conversation is {prompt_tokens} tokens, which fills {prepared.name}'s context of {context}; send a shorter history", "context_length_exceeded", param)
    wanted = body.requested_tokens()
    if wanted is not None and wanted > room:
        name = body.length_name()
        raise ApiError(400, f"the conversation is {prompt_tokens} tokens and {name} is {wanted}: past {prepared.name}'s context of {context}; ask for at most {room}", "context_length_exceeded", name)


def reply_tokens(prompt_tokens: int, prepared: loading.Prepared, settings: ServerSettings, param: str = "messages") -> int:
    """A reply's length when the body sets none: the server's cap (or the model's own generation config),
    or where the conversation leaves less room in the context, the largest power of two that fits (the
    batcher groups requests by their settings, so conversations of different lengths still share batches)."""
    context = context_length(prepared.config) if prepared.family != registry.ENCODER_DECODER else None
    room = None if context is None else context - prompt_tokens
    own = prepared.generation_defaults.get("max_new_tokens")
    default = min(settings.max_tokens_cap, own if isinstance(own, int) and own > 0 else settings.max_tokens_cap)
    if room is None or room >= default:
        return default
    if room < 1:
        raise ApiError(400, f"the conversation is {prompt_tokens} tokens, which fills {prepared.name}'s context of {context}; send a shorter history", "context_length_exceeded", param)
    return 1 << (room.bit_length() - 1)
