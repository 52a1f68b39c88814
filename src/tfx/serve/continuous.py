"""Continuous batching for `tfx serve`'s generate requests (/v1/completions, /v1/chat/completions and
/v1/generate): a request that arrives while others decode joins them at the next decode step instead of
waiting for their batch to finish.

It is transformers' own continuous batching (`model.init_continuous_batching`: a ContinuousBatchingManager
with a paged KV cache and a generation thread of its own), which runs GPT-2 and the other causal LMs on
CPU and CUDA with sdpa or flash attention. One manager per model slot and decoding mode: greedy, and
sampling with each request's own temperature, top_k and top_p (transformers' per-request logits
processors). Requests go in as they arrive (`add_request`); their tokens come back at every step
(`register_result_handler`, on the event loop) and are decoded with the generate task's own tokenizer,
prompt cut and result, so a greedy request gets the text the window batcher gives it.

What the manager cannot honour exactly goes to the window batcher (batcher.Slot) as before: other tasks,
encoder-decoder models, seeds, beams, n > 1, stop strings, min_new_tokens, max_length, repetition penalty
and no-repeat n-grams, a generation config that needs logits processors the manager lacks, eager
attention (the manager would switch the shared model to paged attention under the window batcher), and
devices other than CPU and CUDA. The manager's cache is sized here (transformers would size it from free
memory): the slot's batch limit times the model's context, within KV_BUDGET."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from typing import Any

from tfx import registry
from tfx.errors import TfxError
from tfx.serve.continuous_engine import GREEDY, KV_BUDGET, SAMPLE, Engine, Job, prepare, start_engine
from tfx.serve.work import Finish, Outcome, Stream
from tfx.spec import GenerateSettings
from tfx.tasks import make_task
from tfx.tasks.generate import length_kwargs

log = logging.getLogger("tfx")

MAX_TASKS = 32  # generate tasks kept, one per distinct settings
NO_PROCESSOR = ("max_length", "repetition_penalty", "no_repeat_ngram_size")  # settings the manager cannot take


def for_slot(slot) -> Continuous | None:  # slot: a serve.batcher.Slot (which imports this module)
    """The slot's continuous batcher, or None where --batching or the model's family rules it out."""
    mode = getattr(slot.manager.settings, "batching", "window")
    if mode == "window" or slot.prepared.family != registry.DECODER_ONLY:
        return None
    device = slot.manager.device.split(":")[0]
    if device not in KV_BUDGET:
        (log.warning if mode == "continuous" else log.info)("%s: continuous batching runs on cpu and cuda, not %s; window batching instead", slot.prepared.name, device)
        return None
    return Continuous(slot, loud=mode == "continuous")


def decoding_mode(task: str, settings: Any, defaults: dict[str, Any]) -> str | None:
    """GREEDY or SAMPLE for a request transformers' manager decodes as model.generate would, else None."""
    if task != "generate" or not isinstance(settings, GenerateSettings):
        return None
    if settings.seed is not None or settings.stop or settings.min_new_tokens or any(getattr(settings, k) is not None for k in NO_PROCESSOR):
        return None
    if settings.logprobs is not None or settings.constrained():  # a hook and a grammar the manager has not
        return None
    if settings.beams(defaults) != 1 or (settings.num_return_sequences or defaults.get("num_return_sequences") or 1) != 1:
        return None
    if "max_new_tokens" not in length_kwargs(settings, defaults):  # the model's own max_length decides
        return None
    return SAMPLE if settings.sampling(defaults) else GREEDY


class Continuous:
    """One slot's managers (started on the slot's thread) and the requests they run (on the event loop)."""

    def __init__(self, slot, loud: bool = False):
        self.slot = slot
        self.loud = loud  # --batching continuous: say so when a model cannot
        self.lock = threading.Lock()  # guards `engines` between the loop and the slot's thread
        self.engines: dict[str, Engine] = {}
        self.refused: dict[str, str] = {}  # mode -> why the model cannot (the window batcher runs it)
        self._starting: dict[str, asyncio.Future] = {}
        self._tasks: OrderedDict = OrderedDict()  # settings -> generate task (its tokenizer, prompt cut, decode)
        self._background: set[asyncio.Task] = set()

    def mode(self, task: str, settings: Any) -> str | None:
        if getattr(self.slot, "backend", "transformers") != "transformers":  # CTranslate2 runs it (serve.backends)
            return None
        mode = decoding_mode(task, settings, self.slot.prepared.generation_defaults)
        return None if mode is None or mode in self.refused else mode

    def busy(self) -> bool:
        return any(engine.jobs for engine in list(self.engines.values()))

    # --- on the event loop ---

    async def run(self, task: str, settings: Any, texts: list[str], finish: Finish | None = None) -> list[Outcome] | None:
        """The texts' outcomes, each text one request in the running batch; None: the window batcher's."""
        mode = self.mode(task, settings)
        engine = await self.engine(mode) if mode is not None else None
        if engine is None:
            return None
        slot, loop = self.slot, asyncio.get_running_loop()
        slot.admit(len(texts))
        release = slot.hold(len(texts))
        futures = [loop.create_future() for _ in texts]
        for future in futures:
            future.add_done_callback(release)
        slot.manager.count("requests", 1)
        slot.served += 1
        try:
            gen = self.task_for(settings, engine)
            for text, future in zip(texts, futures):
                job = prepare(gen, text, finish, future)
                if job is not None:
                    future.add_done_callback(lambda f, job=job: job.cancel() if f.cancelled() else None)
                    await self.submit(mode, job)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return list(await asyncio.gather(*futures))

    def stream(self, task: str, settings: Any, text: str, finish: Finish | None = None) -> Stream | None:
        """One text streamed from the running batch; None: the window batcher streams it."""
        mode = self.mode(task, settings)
        if mode is None:
            return None
        slot, loop = self.slot, asyncio.get_running_loop()
        slot.admit(1)
        stream = Stream(loop, slot.hold(1))
        slot.manager.count("requests", 1)
        slot.served += 1
        work = loop.create_task(self._stream(mode, task, settings, text, finish, stream))
        self._background.add(work)
        work.add_done_callback(self._background.discard)
        return stream

    async def _stream(self, mode: str, task: str, settings: Any, text: str, finish: Finish | None, stream: Stream) -> None:
        slot = self.slot
        try:
            engine = await self.engine(mode)
            if engine is None:  # the model cannot: the window batcher's stream, as Slot.stream runs it
                slot.executor.submit(slot.stream_on_thread, task, settings, text, stream, finish)
                return
            job = prepare(self.task_for(settings, engine), text, finish, stream)
            if job is not None:
                await self.submit(mode, job)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            stream.put("error", exc)
            stream.finished()

    async def submit(self, mode: str, job: Job) -> None:
        """Into the mode's running manager; once more into a fresh one if that one is stopping (an unload)."""
        if mode == SAMPLE:  # unseeded sampling shares torch's generators with the window batcher's
            await asyncio.get_running_loop().run_in_executor(None, job.share_rng)
        for _ in range(2):
            engine = await self.engine(mode)
            if engine is not None and engine.submit(job):
                return
        job.fail(TfxError(f"{self.slot.prepared.name} is being unloaded.", "Send the request again."))

    async def engine(self, mode: str) -> Engine | None:
        """The mode's running manager, started on the slot's thread (loading the model) if there is none."""
        engine = self.engines.get(mode)
        if engine is not None and engine.alive():
            return engine
        if mode in self.refused:
            return None
        starting = self._starting.get(mode)
        if starting is None:
            loop = asyncio.get_running_loop()
            starting = self._starting[mode] = loop.run_in_executor(self.slot.executor, self._start, mode)
            starting.add_done_callback(lambda _: self._starting.pop(mode, None))
        return await asyncio.shield(starting)

    def task_for(self, settings: GenerateSettings, engine: Engine):
        """The generate task of these settings (kept, a few of them): what the window batcher would run."""
        gen = self._tasks.pop(settings, None)
        if gen is None or gen.loaded is not engine.loaded:
            gen = make_task("generate", engine.loaded, settings)
        self._tasks[settings] = gen
        while len(self._tasks) > MAX_TASKS:
            self._tasks.popitem(last=False)
        return gen

    # --- on the slot's thread ---

    def _start(self, mode: str) -> Engine | None:
        with self.lock:
            engine = self.engines.get(mode)
        if engine is not None and engine.alive():
            return engine
        loaded = self.slot.ensure_loaded()
        name = self.slot.prepared.name
        try:
            loaded.tokenizer, loaded.model  # noqa: B018 - loaded here, on the slot's thread, not on the loop
            engine = start_engine(self.slot, loaded, mode)
        except Exception as exc:  # noqa: BLE001 - the model cannot: window batching for this mode
            engine = f"{type(exc).__name__}: {exc}"
        if isinstance(engine, str):
            self.refused[mode] = engine
            (log.warning if self.loud else log.info)("%s: %s requests use window batching (%s)", name, mode, engine)
            return None
        with self.lock:
            self.engines[mode] = engine
        log.info("%s: continuous batching (%s) started", name, mode)
        return engine

    def close(self, hard: bool = False) -> None:
        """Stop the managers (an unload, or the server's shutdown: hard fails what is in flight)."""
        with self.lock:
            engines, self.engines = list(self.engines.values()), {}
        self._tasks = OrderedDict()
        for engine in engines:
            engine.stop(hard)
