"""Models kept warm for the server, and the batcher in front of them.

Each loaded model (one snapshot directory, one head class) is a Slot with a single inference thread: torch runs
one batch at a time per model, off the event loop. Requests for the same model with identical parameters
join one batch; a batch is dispatched after a short collection window but stays open to newcomers until its
thread picks it up, so while one batch runs the next one fills. A model idle past the keep-alive is unloaded
by its own thread, behind any work already queued there, and loaded again by the next batch that needs it."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx import hub, loading, registry
from tfx.tasks import default_batch_size
from tfx.errors import RecordError, TfxError
from tfx.serve.config import Settings

log = logging.getLogger("tfx")

Outcome = tuple[dict[str, Any], int]  # (result dict as the CLI's task returns it, size of the batch it ran in)
Finish = Callable[[Any, list[str], list[dict[str, Any]]], None]  # (tokenizer, texts, results) -> None, in place


class ModelNotFound(TfxError):
    """The request names a model the server cannot find or may not load (HTTP 404)."""


class TaskMismatch(TfxError):
    """The model's family cannot do the requested task (HTTP 400)."""


class StreamCancelled(Exception):
    """Raised inside generate() by the streaming callback once the reader has gone or has what it needs."""


@dataclass(frozen=True)
class Known:
    """A model name resolved to a local snapshot, with the config files read once."""

    resolved: hub.Resolved
    config: dict[str, Any]
    generation_defaults: dict[str, Any]


@dataclass
class Pending:
    text: str
    future: asyncio.Future


@dataclass
class Batch:
    task: str
    params: dict[str, Any]
    key: str | None  # None: this batch takes no other request (a seed, or a stream)
    finish: Finish | None = None
    items: list[Pending] = field(default_factory=list)
    closed: bool = False


class Slot:
    """One model in memory (or ready to be loaded again), its inference thread and its open batches."""

    def __init__(self, known: Known, task: str, family: str, manager: Manager):
        self.known = known
        self.load_task = task  # the task whose head class this slot loads; others that share the head use it
        self.head = loading.auto_class_name(task, family)
        self.names = {known.resolved.name}
        self.manager = manager
        self.loaded = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tfx-model")
        self.lock = threading.Lock()  # guards `open` and each batch's `closed` between the loop and the thread
        self.open: dict[str, Batch] = {}
        self.last_used = time.monotonic()
        self.unload_queued = False
        self._task = None  # the last task built, reused while the parameters stay the same
        self._task_key: str | None = None

    def touch(self) -> None:
        self.last_used = time.monotonic()

    # --- everything below runs on the slot's own thread ---

    def ensure_loaded(self):
        if self.loaded is None:
            started = time.monotonic()
            m = self.manager
            self.loaded = loading.load(self.known.resolved, self.load_task, m.device, m.dtype, m.settings.trust_remote_code, m.settings.verbose)
            log.info("loaded %s (%s) on %s in %.1f s", self.known.resolved.name, self.head, m.device, time.monotonic() - started)
        self.touch()
        return self.loaded

    def run(self, task_name: str, params: dict[str, Any], texts: list[str], cacheable: bool, finish: Finish | None = None) -> list[Outcome]:
        """Check and run texts like runner.Pump does: empty texts give an empty output, a RecordError gives
        an error result for that text alone, the rest run in batches of at most the task's limit."""
        self.ensure_loaded()
        task = self._task_for(task_name, params, cacheable)
        try:
            outcomes: list[Outcome | None] = [None] * len(texts)
            todo = []
            for i, text in enumerate(texts):
                if not text.strip():
                    outcomes[i] = ({"output": ""}, 0)
                    continue
                try:
                    task.check(text)
                except RecordError as exc:
                    outcomes[i] = ({"error": str(exc)}, 0)
                    continue
                todo.append(i)
            limit = self.manager.batch_limit(task_name)
            for start in range(0, len(todo), limit):
                chunk = todo[start : start + limit]
                chunk_texts = [texts[i] for i in chunk]
                results = task.run(chunk_texts)
                if finish is not None:
                    finish(self.loaded.tokenizer, chunk_texts, results)
                for i, result in zip(chunk, results):
                    outcomes[i] = (result, len(chunk))
                self.manager.count_batch(len(chunk))
        finally:
            if not cacheable:
                _detach_hooks(task)
        self.touch()
        return outcomes  # type: ignore[return-value]

    def _task_for(self, name: str, params: dict[str, Any], cacheable: bool):
        """Reuse the last task while the parameters stay the same. Only one task is kept per model: building
        a task may set shared tokenizer state (a translation's source language), so the task that runs must
        be the last one built."""
        from tfx.tasks import make_task

        key = json.dumps([name, params], sort_keys=True, default=repr) if cacheable else None
        if key is not None and key == self._task_key:
            return self._task
        self._drop_task()
        task = make_task(name, self.loaded, params)
        if key is not None:
            self._task, self._task_key = task, key
        return task

    def _drop_task(self) -> None:
        task, self._task, self._task_key = self._task, None, None
        if task is not None:
            _detach_hooks(task)

    def unload_if_idle(self, keep_alive_s: float) -> None:
        self.unload_queued = False
        with self.lock:
            waiting = bool(self.open)
        if self.loaded is None or waiting or time.monotonic() - self.last_used < keep_alive_s:
            return
        device = self.loaded.device
        self._drop_task()
        self.loaded = None
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        log.info("unloaded %s after %.0f s idle", self.known.resolved.name, keep_alive_s)


def _detach_hooks(task) -> None:
    """A task the server drops must take its hooks on the shared model with it, or every later forward
    would call them and the task could never be freed."""
    task.close()


class Stream:
    """Text pieces of one streamed generation, handed from the slot's thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()

    def put(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop has closed: the server is shutting down
            self.cancelled.set()

    def on_text(self, text: str) -> None:
        if self.cancelled.is_set():
            raise StreamCancelled
        if text:
            self.put("text", text)

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """('text', piece)... then ('done', result) or ('error', exception)."""
        while True:
            kind, value = await self.queue.get()
            yield kind, value
            if kind != "text":
                return

    def close(self) -> None:
        self.cancelled.set()


class Manager:
    """Names -> slots; loading on first use, the batcher, the keep-alive reaper and the counters /health shows."""

    def __init__(self, settings: Settings, device: str, dtype):
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.slots: dict[tuple[str, str], Slot] = {}
        self._known: dict[tuple[str, str | None], Known] = {}
        self._stats_lock = threading.Lock()
        self.stats = {"requests": 0, "batches": 0, "inputs": 0, "largest_batch": 0}
        self.started = time.time()

    # --- finding models ---

    def know(self, name: str, revision: str | None = None, download: bool = False) -> Known:
        """Resolve a name to a local snapshot (cached); local directories only when named with -m."""
        cached = self._known.get((name, revision))
        if cached is not None:
            return cached
        if _looks_like_path(name) and name not in self.settings.models:
            raise ModelNotFound(f"{name} is a local path.", "The server loads local directories only when named with -m at start.")
        try:
            resolved = hub.resolve(name, revision, download=download or self.settings.allow_pull)
        except TfxError as exc:
            hint = exc.hint
            if "not in the local cache" in exc.message and not self.settings.allow_pull:
                hint = f"Run `tfx pull {name}` where the server runs, or start it with --allow-pull."
            raise ModelNotFound(exc.message.replace("the local cache", "the server's cache"), hint) from None
        config = loading.read_json(resolved.path / "config.json")
        known = Known(resolved, config, loading.read_json(resolved.path / "generation_config.json"))
        self._known[(name, revision)] = known
        return known

    def _slot(self, known: Known, task: str) -> Slot:
        try:
            family = loading.check_task(known.resolved, task, known.config)
        except TfxError as exc:
            raise TaskMismatch(exc.message, exc.hint) from None
        key = (str(known.resolved.path), loading.auto_class_name(task, family))
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = Slot(known, task, family, self)
        slot.names.add(known.resolved.name)
        return slot

    def preload(self, name: str) -> None:
        """At start, for -m: resolve (downloading if needed) and load now, so a bad name fails at once."""
        known = self.know(name, download=True)
        family = loading.model_family(known.resolved, known.config)
        task = registry.tasks_for(family, known.config)[0]
        self._slot(known, task).ensure_loaded()

    async def slot_for(self, name: str, task: str, revision: str | None = None) -> tuple[Slot, Known]:
        loop = asyncio.get_running_loop()
        known = self._known.get((name, revision)) or await loop.run_in_executor(None, self.know, name, revision)
        slot = self._slot(known, task)
        slot.touch()
        return slot, known

    # --- running ---

    def batch_limit(self, task: str) -> int:
        return self.settings.max_batch_size or default_batch_size(task, self.device)

    async def run(self, slot: Slot, task: str, params: dict[str, Any], texts: list[str], mergeable: bool = True, finish: Finish | None = None) -> list[Outcome]:
        """Run texts with params on slot, together with other requests' texts where they can join."""
        loop = asyncio.get_running_loop()
        items = [Pending(text, loop.create_future()) for text in texts]
        key = json.dumps([task, params, getattr(finish, "__name__", None)], sort_keys=True) if mergeable else None
        limit = self.batch_limit(task)
        with slot.lock:
            batch = slot.open.get(key) if key is not None else None
            fresh = batch is None or batch.closed or len(batch.items) + len(items) > limit
            if fresh:
                batch = Batch(task, params, key, finish)
                if key is not None:
                    slot.open[key] = batch
            batch.items.extend(items)
        if fresh:
            loop.call_later(self.settings.batch_window_s, self._dispatch, slot, batch)
        self._count("requests", 1)
        return list(await asyncio.gather(*(item.future for item in items)))

    def _dispatch(self, slot: Slot, batch: Batch) -> None:
        loop = asyncio.get_running_loop()
        try:
            slot.executor.submit(self._run_batch, loop, slot, batch)
        except RuntimeError as exc:  # the executor has shut down
            _settle(loop, batch.items, exc=exc)

    def _run_batch(self, loop: asyncio.AbstractEventLoop, slot: Slot, batch: Batch) -> None:
        with slot.lock:
            batch.closed = True
            if batch.key is not None and slot.open.get(batch.key) is batch:
                del slot.open[batch.key]
        try:
            outcomes = slot.run(batch.task, batch.params, [item.text for item in batch.items], batch.key is not None, batch.finish)
        except BaseException as exc:  # noqa: BLE001 - handed to each waiting request
            _settle(loop, batch.items, exc=exc)
            return
        _settle(loop, batch.items, outcomes)

    def stream(self, slot: Slot, task: str, params: dict[str, Any], text: str, finish: Finish | None = None) -> Stream:
        """Run one text alone with a streaming callback; its pieces arrive through the returned Stream."""
        stream = Stream(asyncio.get_running_loop())

        def job() -> None:
            try:
                (result, _), = slot.run(task, {**params, "on_text": stream.on_text}, [text], cacheable=False, finish=finish)
                stream.put("done", result)
            except StreamCancelled:
                stream.put("done", None)
            except BaseException as exc:  # noqa: BLE001 - handed to the reader
                stream.put("error", exc)

        self._count("requests", 1)
        slot.executor.submit(job)
        return stream

    # --- keep-alive, counters, shutdown ---

    async def reap_forever(self) -> None:
        keep_alive = self.settings.keep_alive_s
        if keep_alive is None:
            return
        interval = min(max(keep_alive / 4, 0.1), 5.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for slot in list(self.slots.values()):
                if slot.loaded is not None and not slot.unload_queued and now - slot.last_used >= keep_alive:
                    slot.unload_queued = True
                    slot.executor.submit(slot.unload_if_idle, keep_alive)

    def count_batch(self, size: int) -> None:
        with self._stats_lock:
            self.stats["batches"] += 1
            self.stats["inputs"] += size
            self.stats["largest_batch"] = max(self.stats["largest_batch"], size)

    def _count(self, key: str, n: int) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def models(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        listed = []
        for slot in self.slots.values():
            for name in sorted(slot.names):
                listed.append({"id": name, "head": slot.head, "loaded": slot.loaded is not None, "idle_s": round(now - slot.last_used, 1)})
        return listed

    def close(self) -> None:
        for slot in self.slots.values():
            slot.executor.shutdown(wait=False, cancel_futures=True)


def _settle(loop: asyncio.AbstractEventLoop, items: list[Pending], outcomes: list[Outcome] | None = None, exc: BaseException | None = None) -> None:
    """Hand results (or one exception for all) to the waiting requests, on the event loop's thread."""

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


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().is_dir()
