"""The models a server keeps: names -> prepared models (loading.prepare, once per name, task and revision)
-> slots, one per snapshot and head class (`Prepared.auto_class`), so the tasks that run on one head share
one loaded model (BART's generate and fill-mask). Also the keep-alive reaper and the counters /health shows."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from tfx import loading, registry
from tfx.errors import ModelNotFound, NotCached, TaskMismatch
from tfx.serve.batcher import Slot
from tfx.serve.config import Settings
from tfx.tasks import default_batch_size


class Manager:
    def __init__(self, settings: Settings, device: str, dtype):
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.slots: dict[tuple[str, str], Slot] = {}
        self._prepared: dict[tuple[str, str, str | None], loading.Prepared] = {}
        self._stats_lock = threading.Lock()
        self.stats = {"requests": 0, "batches": 0, "inputs": 0, "largest_batch": 0}
        self.started = time.time()

    # --- finding models ---

    def prepare(self, name: str, task: str, revision: str | None = None, download: bool | None = None) -> loading.Prepared:
        """The model resolved to a local snapshot, its configs read and the task checked (kept per name, task
        and revision). Local directories only when named with -m; downloads only with --allow-pull or -m."""
        key = (name, task, revision)
        found = self._prepared.get(key)
        if found is not None:
            return found
        if _looks_like_path(name) and name not in self.settings.models:
            raise ModelNotFound(f"{name} is a local path.", "The server loads local directories only when named with -m at start.")
        download = self.settings.allow_pull if download is None else download
        try:
            prepared = loading.prepare(name, task, None, revision, download=download)
        except NotCached:
            if download:
                raise
            raise NotCached(f"{name} is not in the server's cache.", f"Run `tfx pull {name}` where the server runs, or start it with --allow-pull.") from None
        self._prepared[key] = prepared
        return prepared

    def slot(self, prepared: loading.Prepared) -> Slot:
        key = (str(prepared.resolved.path), prepared.auto_class)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = Slot(prepared, self)
        slot.names.add(prepared.name)
        return slot

    async def slot_for(self, name: str, task: str, revision: str | None = None) -> tuple[Slot, loading.Prepared]:
        prepared = self._prepared.get((name, task, revision))
        if prepared is None:
            prepared = await asyncio.get_running_loop().run_in_executor(None, self.prepare, name, task, revision)
        slot = self.slot(prepared)
        slot.touch()
        return slot, prepared

    def preload(self, name: str) -> None:
        """At start, for -m: resolve (downloading if needed) and load now, so a bad name fails at once. The
        model loads for the first task its family can do (every task of a family shares its head)."""
        mismatch = None
        for task in registry.TASKS:
            try:
                prepared = self.prepare(name, task, download=True)
            except TaskMismatch as exc:
                mismatch = exc
                continue
            self.slot(prepared).ensure_loaded()
            return
        raise mismatch  # type: ignore[misc] - every family can do some task

    def batch_limit(self, task: str) -> int:
        return self.settings.max_batch_size or default_batch_size(task, self.device)

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

    def count(self, key: str, n: int) -> None:
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


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().is_dir()
