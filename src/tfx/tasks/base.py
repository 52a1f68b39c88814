"""What every task shares: the Task interface (check -> cost -> run, or stream) and context lengths."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tfx.errors import RecordError
from tfx.results import Result, TextChunk
from tfx.spec import Settings

log = logging.getLogger("tfx")


class StreamCancelled(Exception):
    """Raised inside generation by the streaming callback once the reader has gone."""


class Task:
    """prepare -> forward -> plain results, for a batch of texts. Tasks never print."""

    name = ""
    batch_sizes = (8, 32)  # (CPU, GPU): records per batch when the user does not choose

    def __init__(self, loaded, settings: Settings):
        self.loaded = loaded
        self.settings = settings
        self.device = loaded.device

    @classmethod
    def default_batch_size(cls, device: str) -> int:
        """Depends on the device alone, so remote and Ray runs group records exactly as a local run does."""
        return cls.batch_sizes[0] if device == "cpu" else cls.batch_sizes[1]

    @property
    def batch_size(self) -> int:
        return self.default_batch_size(self.device)

    def check(self, text: str) -> None:
        """Raise RecordError for an input this task cannot take."""

    def cost(self, text: str) -> int:
        """A cheap length estimate used to group similar inputs into one batch."""
        return len(text)

    # The pipeline cuts a text longer than `max_chars` characters before it is tokenized (pipeline.clip),
    # keeping its start, or its end where keep == "end"; a task may override `char_window` instead.
    keep = "start"

    @property
    def max_chars(self) -> int | None:
        limit = getattr(self, "limit", None) or context_length(self.loaded.config) or 512
        return limit * CHARS_PER_TOKEN

    def run(self, texts: list[str]) -> list[Result]:
        raise NotImplementedError

    def stream(self, text: str) -> Iterator[TextChunk | Result]:
        """Pieces of the output as they are made, then the result. A task that cannot stream yields the
        result alone."""
        yield self.run([text])[0]

    def close(self) -> None:
        """Undo what the task did to the shared model (hooks), so the model can serve another task."""


def stream_from(work: Callable[[Callable[[str], None]], Result]) -> Iterator[TextChunk | Result]:
    """Turn work(on_text) -> result, which calls on_text with each piece from inside generation, into a
    generator of TextChunks then the result. The work runs on a thread; closing the generator (the
    reader went away) stops the generation at its next token."""
    pieces: queue.Queue = queue.Queue()
    cancelled = threading.Event()

    def on_text(text: str | TextChunk) -> None:
        if cancelled.is_set():
            raise StreamCancelled
        if text:
            pieces.put(text if isinstance(text, TextChunk) else TextChunk(text))  # a chunk: with its logprobs

    def run() -> None:
        try:
            pieces.put(work(on_text))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            pieces.put(exc)

    thread = threading.Thread(target=run, name="tfx-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = pieces.get()
            if isinstance(item, StreamCancelled):
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if not isinstance(item, TextChunk):
                return
    finally:
        cancelled.set()
        thread.join()  # at most one more token: the model serves one generation at a time


# Characters kept per token of context when the pipeline cuts a text before tokenizing: natural text runs
# 1-2 characters a token (CJK) to ~4.5 (English, GPT-2's BPE), code ~3, so a cut at 32 keeps at least 7x
# what the model reads; only runs of one character or of whitespace (which tokenizers collapse) can lose
# text the model would have seen, and the record is then marked truncated and named on stderr. It bounds
# the work before the model: 1,024 tokens of context -> 32 KiB of text to tokenize, not 8 MB.
CHARS_PER_TOKEN = 32
# Tasks that read all of a long input (translate, split into sentences; summarize, map-reduce) take up
# to this many contexts' worth of characters (BART: 2 M characters, ~64 chunk summaries).
LONG_CONTEXTS = 64


def context_length(config: dict[str, Any]) -> int | None:
    """How many positions the model can attend to, from its config; None when unbounded (T5)."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def prompt_chars(config: dict[str, Any]) -> int:
    """The characters of a prompt kept for a model of this config before anything tokenizes it: what the
    generate task's pipeline cut keeps (Task.max_chars), for a server that has only the configs."""
    return (context_length(config) or 512) * CHARS_PER_TOKEN


def input_limit(loaded) -> int:
    """Longest input the encoder takes; tokenizers say 1e30 when they do not know."""
    limit = context_length(loaded.config)
    tokenizer_limit = getattr(loaded.tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
        limit = min(limit, tokenizer_limit) if limit else tokenizer_limit
    return limit or 512


def too_long(what: str, n_tokens: int, limit: int) -> RecordError:
    return RecordError(f"input is {n_tokens} tokens, over the {what} limit of {limit} (cutting it was turned off: --no-truncate, or no_truncate in a request)")
