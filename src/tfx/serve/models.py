"""The models a server keeps: names -> prepared models (loading.prepare, once per name, task and revision)
-> slots, one per snapshot and head class (`Prepared.auto_class`), so the tasks that run on one head share
one loaded model (BART's generate and fill-mask). Also the keep-alive reaper and the counters /health shows."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from tfx import hub, loading, registry, userconfig
from tfx.errors import ModelNotFound, NotCached, TaskMismatch
from tfx.serve.backends import Backends
from tfx.serve.batcher import Slot
from tfx.serve.config import Settings
from tfx.serve.metrics import Metrics
from tfx.tasks import default_batch_size

log = logging.getLogger("tfx")
MAX_NAME = 200  # the longest name hub.check_name takes
EVICT_WAIT_S = 120.0  # how long a load waits for a model it evicts to finish its queued work


def resolve_alias(name: str, aliases: dict[str, str]) -> str:
    """The model an alias names (`tfx serve --alias NAME=MODEL`), or the name itself. One level: an alias
    never names another alias, so a loop cannot be written."""
    return aliases.get(name, name)


class Manager:
    def __init__(self, settings: Settings, device: str, dtype):
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.slots: dict[tuple[str, str, str], Slot] = {}  # (snapshot, head class, backend) -> slot
        self._prepared: dict[tuple[str, str, str | None, str | None], loading.Prepared] = {}
        self._stats_lock = threading.Lock()
        self.stats = {"requests": 0, "batches": 0, "inputs": 0, "largest_batch": 0, "cancelled": 0, "refused": 0, "evicted": 0}
        self._room = threading.Lock()  # one model makes room (--max-models) at a time
        self.started = time.time()
        # The user's aliases (tfx alias set, read once at start: the one resolution the CLI uses too), then
        # --alias NAME=MODEL, which wins over them.
        self.aliases = {**userconfig.aliases(), **settings.aliases}
        self.backends = Backends(settings)  # --engine: which models run on CTranslate2
        self.metrics = Metrics(self)  # GET /metrics: this manager's registry

    # --- finding models ---

    def prepare(self, name: str, task: str, revision: str | None = None, download: bool | None = None, variant: str | None = None) -> loading.Prepared:
        """The model resolved to a local snapshot, its configs read and the task checked (kept per name, task
        and revision). Local directories only when named with -m; downloads only with --allow-pull or -m."""
        key = (name, task, revision, variant)  # variant: rank's cross-encoder loads another class
        found = self._prepared.get(key)
        if found is not None:
            return found
        name = self.name_of(name)
        started = name in self.settings.models  # -m: a Hub id or a local directory
        if not started and len(name) > MAX_NAME:  # before any string work on it (close_hint) or the filesystem
            raise ModelNotFound(f"the model name is {len(name)} characters, over the {MAX_NAME} a Hub id may have.", "Name a model in the server's cache.")
        download = self.settings.allow_pull if download is None else download
        try:
            # A client's name is a Hub id, never a path: the answer must not tell which directories exist.
            prepared = loading.prepare(name, task, None, revision, download=download, local_dirs=started, variant=variant)
        except NotCached:
            if download:
                raise
            raise NotCached(f"{name} is not in the server's cache.", f"Run `tfx pull {name}` where the server runs, or start it with --allow-pull.") from None
        self._prepared[key] = prepared
        return prepared

    def name_of(self, name: str) -> str:
        """The model a client's name stands for: an alias's model, else the name."""
        return resolve_alias(name, self.aliases)

    def slot(self, prepared: loading.Prepared, backend: str | None = None, name: str | None = None) -> Slot:
        """name: what the client called it (an alias is listed as the alias, not as its model)."""
        backend = backend or self.backends.of(prepared)
        key = (str(prepared.resolved.path), prepared.auto_class, backend)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = Slot(prepared, self)
            slot.backend = backend
            if name is not None and name != prepared.name:
                slot.names.discard(prepared.name)
        slot.names.add(name or prepared.name)
        return slot

    def forget(self, slot: Slot) -> None:
        """A slot whose first load failed: not a model the server has (never listed, never counted)."""
        for key, found in list(self.slots.items()):
            if found is slot:
                del self.slots[key]

    async def slot_for(self, name: str, task: str, revision: str | None = None, variant: str | None = None, wanted=None) -> tuple[Slot, loading.Prepared]:
        """wanted: the request's settings, for the backend that can run them (serve.backends.route)."""
        prepared = self._prepared.get((name, task, revision, variant))
        if prepared is None:
            prepared = await asyncio.get_running_loop().run_in_executor(None, self.prepare, name, task, revision, None, variant)
        slot = self.slot(prepared, self.backends.route(prepared, wanted), name)
        slot.touch()
        return slot, prepared

    def preload(self, name: str) -> None:
        """At start, for -m: resolve (downloading if needed) and load now, so a bad name fails at once. The
        model loads for the task its head was trained for (registry.natural_tasks), else the first its family
        can do (every task of a family shares its head)."""
        mismatch = None
        resolved = hub.resolve(name, download=True)
        config = loading.read_json(resolved.path / "config.json")
        for task in self.backends.preferred(config, registry.natural_tasks(config, (resolved.path / "modules.json").is_file())):
            try:
                prepared = self.prepare(name, task, download=True)
            except TaskMismatch as exc:
                mismatch = exc
                continue
            slot = self.slot(prepared)
            slot.names.update(alias for alias, model in self.aliases.items() if model == name)
            slot.ensure_loaded()
            return
        raise mismatch  # type: ignore[misc] - every family can do some task

    def make_room(self, loading_slot: Slot) -> None:
        """On loading_slot's thread, before it loads: with --max-models, unload the least recently used other
        models until this one fits. Each unloads on its own thread, behind the work already queued there;
        this waits for that (a bounded wait: a victim stuck behind long work is logged, not waited on forever)."""
        limit = self.settings.max_models
        if limit is None:
            return
        with self._room:  # choosing, not the wait: a wait holds nothing another slot's thread needs
            loaded = sorted((s for s in self.slots.values() if s is not loading_slot and s.loaded is not None and not s.evicting), key=lambda s: s.last_used)
            waits = []
            for victim in loaded[: max(len(loaded) - (limit - 1), 0)]:
                try:
                    waits.append((victim, victim.executor.submit(victim.unload_if_idle, 0.0, True)))
                    victim.evicting = True
                except RuntimeError:  # shutting down
                    pass
        for victim, done in waits:
            try:
                done.result(timeout=EVICT_WAIT_S)
                self.count("evicted", 1)
            except Exception:  # noqa: BLE001 - a time-out or a failed unload: the load goes ahead
                log.warning("could not unload %s within %.0f s to make room for %s", victim.prepared.name, EVICT_WAIT_S, loading_slot.prepared.name)

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

    def load(self, slot: Slot) -> loading.Loaded:
        """On the slot's thread: its model on its backend."""
        return self.backends.load(slot.prepared, slot.backend, self.device, self.dtype)

    def make_task(self, slot: Slot, name: str, settings):
        return self.backends.make_task(slot.backend, name, slot.loaded, settings)

    def count_outcome(self, slot: Slot, outcome) -> None:
        """On the slot's thread, after an input ran: its requests served and tokens (for ps and /metrics)."""
        self.metrics.count_outcome(slot, outcome)

    def knows(self, name: str) -> bool:
        """A model name this server has (named with -m, or prepared for some request)."""
        return name in self.settings.models or name in self.aliases or any(name in slot.names for slot in list(self.slots.values()))

    def count_batch(self, size: int) -> None:
        self.metrics.batch.observe(size)
        with self._stats_lock:
            self.stats["batches"] += 1
            self.stats["inputs"] += size
            self.stats["largest_batch"] = max(self.stats["largest_batch"], size)

    def count(self, key: str, n: int) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def models(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        listed, seen = [], set()
        for slot in list(self.slots.values()):
            for name in sorted(slot.names):
                seen.add(name)
                listed.append({"id": name, "head": slot.head, "loaded": slot.loaded is not None, "idle_s": round(now - slot.last_used, 1)})
        for alias in sorted(set(self.aliases) - seen):  # not asked for yet: loaded on first use
            listed.append({"id": alias, "head": None, "loaded": False, "idle_s": None})
        return listed

    def close(self) -> None:
        for slot in self.slots.values():
            if getattr(slot, "continuous", None) is not None:
                slot.continuous.close(hard=True)  # its manager's thread would keep the process alive
            slot.executor.shutdown(wait=False, cancel_futures=True)
