"""OpenAI's /v1/completions on top of the generate task: choices, stop strings, finish reasons, usage, and the
server-sent events of a streamed completion."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tfx.results import GenerateResult, Result
from tfx.serve.schemas import OPENAI_DEFAULT_MAX_TOKENS, CompletionRequest


@dataclass
class Usage:
    prompt_tokens: int
    sequence_tokens: list[int]  # per returned sequence


def count_usage(task, text: str, result: GenerateResult) -> Usage:
    """Runs on the model's thread after a result (a batcher Finish): token counts for `usage` and finish
    reasons, with the task's own tokenizer, which is the fast one on the fast GPT-2 path."""
    tokenizer = task.tokenizer
    sequences = result.outputs or [result.output]
    if len(sequences) == 1:
        per_sequence = [result.generated_tokens]
    else:  # several sequences: sampling or beams, never the fast path, so transformers' tokenizer
        per_sequence = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sequences]
    return Usage(len(tokenizer(text)["input_ids"]), per_sequence)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text up to the first stop string, and whether one was found (str.find: linear in the text)."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


def _failure(stop: str) -> list[int]:
    """KMP's failure function: fail[i] is the longest proper prefix of stop[: i + 1] that is also its suffix."""
    fail, k = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = fail[k - 1]
        if stop[i] == stop[k]:
            k += 1
        fail[i] = k
    return fail


def held_length(text: str, stop: str, fail: list[int]) -> int:
    """The longest proper prefix of stop that text ends with: what may be a stop string's start. Reads only
    text's last len(stop) - 1 characters, each once (KMP), so it is linear in the stop's length."""
    k = 0
    for ch in text[max(len(text) - len(stop) + 1, 0) :] if len(stop) > 1 else "":
        while k and (k == len(stop) or stop[k] != ch):
            k = fail[k - 1]
        if stop[k] == ch:
            k += 1
    return k if k < len(stop) else 0


class StopScanner:
    """Streamed pieces in, text safe to send out: anything that may be the start of a stop string is held
    back until the next piece shows whether it is."""

    def __init__(self, stops: list[str]):
        self.stops = [(s, _failure(s)) for s in stops if s]
        self.held = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        text, self.hit = cut_at_stop(self.held + piece, [s for s, _ in self.stops])
        if self.hit:
            self.held = ""
            return text
        keep = max((held_length(text, s, fail) for s, fail in self.stops), default=0)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


class Completion:
    """One completion response being built: its id, model, and the choice objects OpenAI's clients read."""

    def __init__(self, request: CompletionRequest, model: str):
        self.request = request
        self.model = model
        self.id = "cmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.max_tokens = request.max_tokens or OPENAI_DEFAULT_MAX_TOKENS
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def choices(self, prompt: str, result: Result, usage: Usage | None, first_index: int) -> list[dict[str, Any]]:
        """result: a GenerateResult, or the empty Result of a blank prompt."""
        self.prompt_tokens += usage.prompt_tokens if usage else 0
        self.completion_tokens += result.tokens
        sequences = getattr(result, "outputs", None) or [result.output]
        counts = usage.sequence_tokens if usage else [0] * len(sequences)
        choices = []
        for j, (text, tokens) in enumerate(zip(sequences, counts)):
            text, stopped = cut_at_stop(text, self.request.stops())
            choices.append(self.choice(first_index + j, (prompt if self.request.echo else "") + text, self.finish_reason(stopped, tokens)))
        return choices

    def finish_reason(self, stopped: bool, tokens: int) -> str:
        return "length" if not stopped and tokens >= self.max_tokens else "stop"

    def choice(self, index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}

    def body(self, choices: list[dict[str, Any]], with_usage: bool = True) -> dict[str, Any]:
        body = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model, "choices": choices}
        if with_usage:
            body["usage"] = self.usage()
        return body

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": self.prompt_tokens + self.completion_tokens}

    def event(self, choices: list[dict[str, Any]]) -> str:
        return sse(self.body(choices, with_usage=False))

    def usage_event(self) -> str:
        return sse({**self.body([], with_usage=False), "usage": self.usage()})


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


async def stream_one(completion: Completion, prompt: str, stream, error_event) -> AsyncIterator[str]:
    """Events of one streamed prompt: pieces as they are made, then the finish reason, usage and [DONE]."""
    request = completion.request
    scanner = StopScanner(request.stops())
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    try:
        if request.echo:
            yield completion.event([completion.choice(0, prompt, None)])
        async for kind, value in stream.events():
            if kind == "text" and not scanner.hit:
                text = scanner.feed(value)
                if text:
                    yield completion.event([completion.choice(0, text, None)])
                if scanner.hit:
                    yield completion.event([completion.choice(0, "", "stop")])
                    if not include_usage:
                        break  # the reader has all it asked for; closing the stream stops the generation
            elif kind == "error":
                yield error_event(value)
                return
            elif kind == "done" and value is not None:  # a batcher Outcome
                if value.error is not None:
                    yield error_event(value.error)
                    return
                if not scanner.hit:
                    rest = scanner.flush()
                    if rest:
                        yield completion.event([completion.choice(0, rest, None)])
                    reason = completion.finish_reason(False, value.result.tokens)
                    yield completion.event([completion.choice(0, "", reason)])
                completion.choices(prompt, value.result, value.extra, 0)  # counts usage
        if include_usage:
            yield completion.usage_event()
        yield SSE_DONE
    finally:
        stream.close()
