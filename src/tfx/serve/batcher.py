"""The batcher: one Slot per model in memory, with a single inference thread and its open batches.

torch runs one batch at a time per model, off the event loop. Requests for the same model with the same
(task, settings) join one batch; a batch is dispatched after a short collection window but stays open to
newcomers until its thread picks it up, so while one batch runs the next one fills. Each batch goes
through the one pipeline (`pipeline.run_texts`: checks, length-sorted model batches, errors per text). A
model idle past the keep-alive is unloaded by its own thread, behind any work already queued there, and
loaded again by the next batch that needs it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tfx import loading, pipeline
from tfx.io import Record
from tfx.results import Result, TextChunk
from tfx.serve import cancel, continuous
from tfx.serve.work import Finish, Outcome, Piece, QueueFull, Stream
from tfx.spec import Settings

__all__ = ["Finish", "Outcome", "QueueFull", "Slot", "Stream", "reusable", "sequences"]  # the work types' old home

log = logging.getLogger("tfx")


@dataclass
class Pending:
    text: str
    future: asyncio.Future
    finish: Finish | None = None


@dataclass
class Batch:
    task: str
    settings: Settings
    key: tuple[str, Settings] | None  # None: this batch takes no other request (a seed)
    items: list[Pending] = field(default_factory=list)
    closed: bool = False


def sequences(settings: Settings) -> int:
    """Rows one input becomes in a model batch: n sampled sequences, or the beams of beam search."""
    return max(getattr(settings, "num_return_sequences", None) or 1, getattr(settings, "num_beams", None) or 1)


def reusable(settings: Settings) -> bool:
    """A seed is set when its task is built, so a seeded request gets a task of its own, and a batch of its
    own: two requests with one seed each get the same numbers."""
    return getattr(settings, "seed", None) is None


class Slot:
    """One model (one snapshot and head class) in memory, or ready to be loaded again."""

    def __init__(self, prepared: loading.Prepared, manager: Any):  # manager: the serve.models.Manager that owns it
        self.prepared = prepared  # the first request's; the tasks that share the head use the same model
        self.head = prepared.auto_class
        self.names = {prepared.name}
        self.manager = manager
        self.loaded: loading.Loaded | None = None
        self.ever_loaded = False
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tfx-model")
        self.lock = threading.Lock()  # guards `open` and each batch's `closed` between the loop and the thread
        self.open: dict[tuple[str, Settings], Batch] = {}
        self.last_used = time.monotonic()
        self.unload_queued = False
        self.evicting = False  # an unload for --max-models is queued on this slot's thread
        self._task = None  # the last task built, reused while (task, settings) stay the same
        self._task_key: tuple[str, Settings] | None = None
        self.pending = 0  # inputs queued or running here (changed on the event loop only)
        self.backend = "transformers"  # or "ct2" (serve.backends; the manager sets it)
        self.served = 0  # requests taken (tfx ps)
        self.continuous = continuous.for_slot(self)  # --batching: generate requests join the running batch

    def touch(self) -> None:
        self.last_used = time.monotonic()

    # --- on the event loop ---

    def admit(self, count: int) -> None:
        """Refuse work past --max-queue before it is queued."""
        limit = self.manager.settings.max_queue
        if self.pending + count > limit:
            self.manager.count("refused", 1)
            raise QueueFull(
                f"{self.prepared.name} has {self.pending} inputs waiting, and this request's {count} would pass the server's --max-queue of {limit}.",
                "Retry after a moment (see Retry-After), or send fewer inputs.",
            )

    def hold(self, count: int) -> Callable[[Any], None]:
        self.pending += count

        def release(_future=None) -> None:
            self.pending -= 1

        return release

    async def run(self, task: str, settings: Settings, texts: list[str], finish: Finish | None = None) -> list[Outcome]:
        """Run texts on this model, together with other requests' texts where they can join."""
        if self.continuous is not None:
            done = await self.continuous.run(task, settings, texts, finish)
            if done is not None:
                return done
        loop = asyncio.get_running_loop()
        self.admit(len(texts))
        items = [Pending(text, loop.create_future(), finish) for text in texts]
        release = self.hold(len(items))
        for item in items:
            item.future.add_done_callback(release)  # settled or cancelled (the client went away)
        key = (task, settings) if reusable(settings) else None
        limit = self.batch_limit(task, settings)
        with self.lock:
            batch = self.open.get(key) if key is not None else None
            fresh = batch is None or batch.closed or len(batch.items) + len(items) > limit
            if fresh:
                batch = Batch(task, settings, key)
                if key is not None:
                    self.open[key] = batch
            batch.items.extend(items)
        if fresh:
            loop.call_later(self.manager.settings.batch_window_s, self._dispatch, loop, batch)
        self.manager.count("requests", 1)
        self.served += 1
        return list(await asyncio.gather(*(item.future for item in items)))

    def stream(self, task: str, settings: Settings, text: str, finish: Finish | None = None) -> Stream:
        """Run one text alone, streamed; its pieces arrive through the returned Stream."""
        continuous = self.continuous.stream(task, settings, text, finish) if self.continuous is not None else None
        if continuous is not None:
            return continuous
        self.admit(1)
        stream = Stream(asyncio.get_running_loop(), self.hold(1))
        self.manager.count("requests", 1)
        self.served += 1
        try:
            self.executor.submit(self.stream_on_thread, task, settings, text, stream, finish)
        except RuntimeError as exc:  # the executor has shut down
            stream.put("error", exc)
        return stream

    def batch_limit(self, task: str, settings: Settings) -> int:
        """Inputs in one model batch: the task's limit counts rows, and each input is `sequences` rows."""
        return max(1, self.manager.batch_limit(task) // sequences(settings))

    def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: Batch) -> None:
        try:
            self.executor.submit(self._run_batch, loop, batch)
        except RuntimeError as exc:  # the executor has shut down
            _settle(loop, batch.items, exc=exc)

    # --- everything below runs on the slot's own thread ---

    def ensure_loaded(self) -> loading.Loaded:
        if self.loaded is None:
            m = self.manager
            m.make_room(self)  # --max-models: the least recently used others are unloaded first
            try:
                self.loaded = m.load(self)  # on the slot's backend (--engine)
            except BaseException:
                if not self.ever_loaded:  # not a model this server has: never a second, empty copy in the lists
                    m.forget(self)
                raise
            self.ever_loaded = True
        self.touch()
        return self.loaded

    def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: Batch) -> None:
        with self.lock:
            batch.closed = True
            if batch.key is not None and self.open.get(batch.key) is batch:
                del self.open[batch.key]
        items = [item for item in batch.items if not item.future.done()]  # a gone client's are cancelled
        if len(items) < len(batch.items):
            self.manager.count("cancelled", len(batch.items) - len(items))
        if not items:
            return
        try:
            outcomes = self.run_now(batch.task, batch.settings, items)
        except BaseException as exc:  # noqa: BLE001 - handed to each waiting request
            _settle(loop, items, exc=exc)
            return
        _settle(loop, items, outcomes)

    def run_now(self, task_name: str, settings: Settings, items: list[Pending]) -> list[Outcome]:
        """The texts through the one pipeline: an empty text gives an empty result, a RecordError an error
        for that text alone, the rest run in model batches of at most the task's limit."""
        self.ensure_loaded()
        task = self._task_for(task_name, settings)
        largest = 0

        def on_batch(size: int, tokens: int) -> None:
            nonlocal largest
            largest = max(largest, size)
            self.manager.count_batch(size)

        try:
            with self.watching(task, lambda: any(not item.future.done() for item in items)):  # a gone client's future is cancelled
                done = pipeline.run_texts(task, [item.text for item in items], self.batch_limit(task_name, settings), on_batch)
            outcomes = []
            for item, d in zip(items, done):
                ran = d.error is None and bool(d.record.text.strip())  # an input may be a (question, context) pair
                extra = item.finish(task, item.text, d.result) if ran and item.finish is not None else None
                outcomes.append(Outcome(d.result, d.error, largest if ran else 0, extra))
                if ran:
                    self.manager.count_outcome(self, outcomes[-1])  # tokens, for /metrics
        finally:
            if not reusable(settings):
                task.close()
        self.touch()
        return outcomes

    def stream_on_thread(self, task_name: str, settings: Settings, text: str, stream: Stream, finish: Finish | None) -> None:
        try:
            stream.put("done", self.stream_now(task_name, settings, text, stream, finish))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            stream.put("error", exc)
        finally:
            stream.finished()

    def stream_now(self, task_name: str, settings: Settings, text: str, stream: Stream, finish: Finish | None) -> Outcome | None:
        """The text's pieces onto the stream as they are made; its outcome, or None once the reader has gone
        (closing the task's generator stops the generation at its next token)."""
        if stream.cancelled.is_set():  # the reader left while this waited its turn: no prompt to read
            return None
        self.ensure_loaded()
        task = self._task_for(task_name, settings)
        try:
            error = pipeline.check_record(task, Record(0, 1, text))
            if error is not None:
                return Outcome(None, error)
            if not text.strip():
                return Outcome(Result())
            result = None
            with self.watching(task, lambda: not stream.cancelled.is_set()):  # per token, text or none
                pieces = task.stream(pipeline.clip(task, text)[0])  # cut before tokenizing, as run_texts does
                try:
                    for item in pieces:
                        if stream.cancelled.is_set():
                            return None
                        if isinstance(item, TextChunk):
                            stream.put("text", Piece(item.text, item.logprobs))
                        else:
                            result = item
                finally:
                    pieces.close()
            if result is None:  # the generation was stopped
                return None
            self.manager.count_batch(1)
            outcome = Outcome(result, None, 1, finish(task, text, result) if finish is not None else None)
            self.manager.count_outcome(self, outcome)
            return outcome
        finally:
            if not reusable(settings):
                task.close()
            self.touch()

    def watching(self, task, wanted):
        """serve.cancel's per-token check, on the transformers backend (CTranslate2 takes no criteria)."""
        return cancel.watching(task, wanted) if self.backend == "transformers" else contextlib.nullcontext()

    def _task_for(self, name: str, settings: Settings):
        """Reuse the last task while (task, settings) stay the same. Only one task is kept per model: building
        a task may set shared tokenizer state (a translation's source language), so the task that runs must
        be the last one built."""
        key = (name, settings) if reusable(settings) else None
        if key is not None and key == self._task_key:
            return self._task
        self._drop_task()
        task = self.manager.make_task(self, name, settings)  # on the slot's backend
        if key is not None:
            self._task, self._task_key = task, key
        return task

    def _drop_task(self) -> None:
        """A task the server drops takes its hooks on the shared model with it (task.close), or every later
        forward would call them and the task could never be freed."""
        task, self._task, self._task_key = self._task, None, None
        if task is not None:
            task.close()

    def unload_if_idle(self, keep_alive_s: float, evict: bool = False, why: str = "to make room for another model (--max-models)") -> None:
        """On the slot's thread, behind its queued work. evict: for another model (--max-models), even
        with requests waiting here (they load it again)."""
        self.unload_queued = False
        if evict:
            self.evicting = False
        with self.lock:
            waiting = bool(self.open) or (self.continuous is not None and self.continuous.busy())
        if self.loaded is None or (not evict and (waiting or time.monotonic() - self.last_used < keep_alive_s)):
            return
        device = self.loaded.device
        if self.continuous is not None:
            self.continuous.close()  # the requests in flight finish first
        self._drop_task()
        self.loaded = None
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        if evict:
            log.info("unloaded %s %s", self.prepared.name, why)
        else:
            log.info("unloaded %s after %.0f s idle", self.prepared.name, keep_alive_s)


def _settle(loop: asyncio.AbstractEventLoop, items: list[Pending], outcomes: list[Outcome] | None = None, exc: BaseException | None = None) -> None:
    """Hand outcomes (or one exception for all) to the waiting requests, on the event loop's thread."""

    def settle() -> None:
        for i, item in enumerate(items):
            if item.future.done():  # the request went away
                continue
            if exc is not None:
                item.future.set_exception(exc)
            else:
                item.future.set_result(outcomes[i])

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop has closed: nobody is waiting any more
        pass
