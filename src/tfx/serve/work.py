"""The plain work types of tfx serve, shared by the batcher, continuous batching and the routes: one text's
answer (`Outcome`), what a request keeps besides it (`Finish`), a streamed generation (`Stream`) and a full
queue (`QueueFull`). Imports nothing of tfx.serve: it is the bottom of the package."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from tfx.errors import TfxError
from tfx.results import Result

# Run on the model's thread after a text's result, with the task that made it: what the request keeps
# besides the result (the completions endpoint's token counts, with the task's own tokenizer).
Finish = Callable[[Any, str, Result], Any]


class QueueFull(TfxError):
    """A model's queue is at --max-queue: answered 503 with Retry-After."""

    http_status = 503
    code = "queue_full"


@dataclass
class Outcome:
    """One text's answer: a result or the error that makes it an error record, the size of the model
    batch it ran in (0: it did not run), and what the request's Finish made of it."""

    result: Result | None
    error: str | None = None
    batch: int = 0
    extra: Any = None


class Piece(str):
    """A streamed text piece, with the log-probability entries of the tokens it holds (None when they were
    not asked): a str, so readers that want only the text read it as one."""

    logprobs: list | None

    def __new__(cls, text: str, logprobs: list | None = None):
        piece = super().__new__(cls, text)
        piece.logprobs = logprobs
        return piece


class Stream:
    """Text pieces of one streamed generation, handed from the slot's thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, release: Callable[[], None] | None = None):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self._release = release  # the slot's count of pending inputs, given back once, on the loop

    def put(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop has closed: the server is shutting down
            self.cancelled.set()

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """('text', piece: a str or a Piece)... then ('done', Outcome, or None when cancelled) or ('error', exception)."""
        while True:
            kind, value = await self.queue.get()
            yield kind, value
            if kind != "text":
                return

    def finished(self) -> None:
        """From the slot's thread: the work is over, so its input no longer counts as pending."""
        try:
            self.loop.call_soon_threadsafe(self.close)
        except RuntimeError:  # the loop has closed
            pass

    def close(self) -> None:
        self.cancelled.set()
        release, self._release = self._release, None
        if release is not None:
            release()
