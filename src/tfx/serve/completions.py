"""OpenAI's POST /v1/completions on the one generation body (serve.generation): text or token-id prompts,
echo, and the text_completion shapes, whole or streamed."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request

from tfx.serve import decoding
from tfx.serve.http import answered, sse_error
from tfx.serve.config import Settings as ServerSettings
from tfx.serve.events import SSE_DONE, sse
from tfx.serve.generation import Handler, Shape, pieces
from tfx.serve.models import Manager
from tfx.serve.schemas import CompletionRequest
from tfx.serve.stops import StopScanner, cut_at_stop  # noqa: F401 - their old home

__all__ = ["SSE_DONE", "Completion", "StopScanner", "cut_at_stop", "register", "sse"]


class Completion(Shape):
    """One completion response being built: its id, model, and the choice objects OpenAI's clients read."""

    kind = "text_completion"
    prefix = "cmpl-"

    def __init__(self, generation):
        super().__init__(generation)
        self.id = self.prefix + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def choice(self, index: int, text: str, finish_reason: str | None, tokens: list | None = None) -> dict[str, Any]:
        return {"text": text, "index": index, "logprobs": decoding.completion_logprobs(tokens), "finish_reason": finish_reason}

    def choices(self, outcomes: list) -> list[dict[str, Any]]:
        """The choices of every prompt's outcome (a GenerateResult, or the empty Result of a blank prompt)."""
        choices = []
        for i, (prompt, outcome) in enumerate(zip(self.generation.prompts, outcomes)):
            for text, reason, tokens in decoding.settle(self, outcome, i):
                choices.append(self.choice(len(choices), self.echoed(prompt) + text, reason, tokens))
        return choices

    def echoed(self, prompt: str) -> str:
        return prompt if getattr(self.body, "echo", False) else ""

    def envelope(self, choices: list[dict[str, Any]], with_usage: bool = True) -> dict[str, Any]:
        body = {"id": self.id, "object": self.kind, "created": self.created, "model": self.generation.model, "choices": choices}
        if with_usage:
            body["usage"] = self.usage()
        return body

    def event(self, choices: list[dict[str, Any]]) -> str:
        return sse(self.envelope(choices, with_usage=False))

    def usage_event(self) -> str:
        return sse({**self.envelope([], with_usage=False), "usage": self.usage()})

    def include_usage(self) -> bool:
        return bool(self.body.stream_options and self.body.stream_options.include_usage)

    def answer(self, outcomes: list) -> dict[str, Any]:
        return self.envelope(self.choices(outcomes))

    def whole_events(self, outcomes: list) -> list[str]:
        events = [self.event([c]) for c in self.choices(outcomes)]
        return events + ([self.usage_event()] if self.include_usage() else [])

    def opening(self) -> list[str]:
        prompt = self.generation.prompts[0]
        return [self.event([self.choice(0, prompt, None)])] if self.echoed(prompt) else []

    async def events(self, stream) -> AsyncIterator[str]:
        """One streamed prompt: pieces as they are made, then the finish reason, usage and [DONE]."""
        for event in self.opening():
            yield event
        wait = self.include_usage() or self.body.logprobs_wanted() is not None
        async for kind, *value in pieces(self.generation, stream, wait):
            if kind == "text":
                yield self.event([self.choice(0, value[0], None, getattr(value[0], "logprobs", None))])  # its tokens' logprobs
            elif kind == "error":
                yield sse_error(value[0])
                return
            else:
                reason, outcome = value
                decoding.settle(self, outcome)
                yield self.event([self.choice(0, "", reason)])  # the logprobs went with the text
        if self.include_usage():
            yield self.usage_event()
        yield SSE_DONE


def register(app: FastAPI, settings: ServerSettings, manager: Manager, handler: Handler | None = None) -> None:
    handler = handler or Handler(settings, manager)

    @app.post("/v1/completions")
    @answered
    async def create_completion(request: Request):
        return await handler.answer(request, CompletionRequest, Completion)
