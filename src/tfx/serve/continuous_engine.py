"""The manager side of continuous batching (serve.continuous): transformers' ContinuousBatchingManager
started for one model and decoding mode (`start_engine`), the requests in it (`Engine`), and each prompt's
way in and out (`prepare`, `Job`: the generate task's prompt cut, incremental decoding of streamed
tokens, its result and outcome as the window batcher makes them)."""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from typing import Any

from tfx import pipeline
from tfx.errors import TfxError
from tfx.results import GenerateResult, Result
from tfx.serve import continuous_private as private
from tfx.serve.work import Finish, Outcome, Stream
from tfx.spec import GenerateSettings
from tfx.tasks.base import context_length
from tfx.tasks.generate import RNG
from tfx.tokens import TextStream

log = logging.getLogger("tfx")

GREEDY, SAMPLE = "greedy", "sample"
PAGE_SIZE = 64  # tokens per page of the paged KV cache
KV_BUDGET = {"cpu": 512 << 20, "cuda": 4 << 30}  # bytes of KV cache one manager may allocate, by device type
STEP_TOKENS = {"cpu": 512, "cuda": 2048}  # most tokens in one forward pass (a long prompt prefills in chunks)
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0  # an unload lets the requests in flight finish for this long


def start_engine(slot, loaded, mode: str) -> Engine | str:
    """A started manager for the mode, or why this model cannot have one."""
    import torch
    from transformers import ContinuousBatchingConfig

    model = loaded.model
    if not hasattr(model, "init_continuous_batching"):
        return f"{type(model).__name__} has no continuous batching"
    attention = model.config._attn_implementation or "eager"
    if attention != "sdpa" and not attention.startswith("flash"):
        return f"its {attention} attention would be switched to paged attention under the window batcher"
    quiet_manager_log(slot.manager.settings.verbose)
    device = loaded.device.split(":")[0]
    limit = slot.batch_limit("generate", GenerateSettings())
    text = model.config.get_text_config()
    heads = text.num_attention_heads
    per_token = 2 * text.num_hidden_layers * (getattr(text, "num_key_value_heads", None) or heads) * (getattr(text, "head_dim", None) or text.hidden_size // heads) * model.dtype.itemsize
    context = context_length(loaded.config) or 2048
    tokens = min(limit * context, max(KV_BUDGET[device] // per_token, context + PAGE_SIZE))
    config = ContinuousBatchingConfig(
        page_size=PAGE_SIZE, num_blocks=-(-tokens // PAGE_SIZE) + 1, max_batch_tokens=max(STEP_TOKENS[device], limit),
        max_requests_per_batch=limit, auto_switch_to_flash=False, per_request_processors=mode == SAMPLE,
    )  # fmt: skip
    generation = copy.deepcopy(model.generation_config)
    generation.num_beams, generation.num_return_sequences = 1, 1
    if mode == SAMPLE:  # values that make each warper exist; every request then sets its own
        generation.do_sample, generation.temperature, generation.top_k, generation.top_p = True, 0.5, 2, 0.5
    else:
        generation.do_sample, generation.temperature, generation.top_k, generation.top_p = False, None, None, None
    # The manager seeds torch's default generator as it starts: not while a seeded generation runs.
    with RNG.alone(), torch.inference_mode():
        manager = model.init_continuous_batching(generation_config=generation, continuous_batching_config=config)
        extra = private.unsupported_processors(manager)
        if extra:
            return f"its generation config needs {', '.join(extra)}"
        manager.start()
        started = private.wait_until_started(manager, START_TIMEOUT_S)
    if not started:
        manager.stop(block=True, timeout=5, hard_stop=True)
        return "transformers' continuous batching did not start"
    return Engine(manager, mode, slot, loaded, text.vocab_size)


def quiet_manager_log(verbose: bool) -> None:
    """transformers' ContinuousBatchingLogger prints to stderr by itself: only its errors without -v, and
    never its complaint about psutil (the cache is sized here, not from free memory)."""
    logger = logging.getLogger("ContinuousBatchingLogger")
    logger.setLevel(logging.INFO if verbose else logging.ERROR)
    if not any(isinstance(f, _NoPsutil) for f in logger.filters):
        logger.addFilter(_NoPsutil())


class _NoPsutil(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "psutil" not in record.getMessage()


class Engine:
    """One running ContinuousBatchingManager and the requests in it (touched on the event loop only)."""

    def __init__(self, manager, mode: str, slot, loaded, vocab: int):  # slot: the serve.batcher.Slot it runs for
        self.cb, self.mode, self.slot, self.loaded = manager, mode, slot, loaded
        self.defaults, self.vocab = loaded.model.generation_config, vocab  # what a request leaves unset
        self.jobs: dict[str, Job] = {}
        self.served = 0  # requests since it was last idle: one continuous batch, for /health's counters

    def alive(self) -> bool:
        return self.cb.is_running() and self.cb.background_thread_status.fatal_error is None

    def submit(self, job: Job) -> bool:
        rid = "tfx-" + uuid.uuid4().hex
        job.engine, job.rid = self, rid
        self.jobs[rid] = job
        self.cb.register_result_handler(rid, job.on_output)  # before add_request: a short one may finish at once
        added = self.cb.add_request(job.ids, request_id=rid, max_new_tokens=job.max_new_tokens, streaming=job.stream is not None, **self.sampling(job.task.settings))
        if added is None:  # stopping: refused
            self.forget(rid)
            job.engine = None
            return False
        self.served += 1
        for other in self.jobs.values():
            other.peak = max(other.peak, len(self.jobs))
        self.slot.touch()
        return True

    def sampling(self, settings: GenerateSettings) -> dict[str, Any]:
        """Each warper's value as model.generate would take it: the request's, else the model's default."""
        if self.mode != SAMPLE:
            return {}
        d = self.defaults
        t = settings.temperature if settings.temperature is not None else d.temperature
        k = settings.top_k if settings.top_k is not None else d.top_k
        p = settings.top_p if settings.top_p is not None else d.top_p
        return {"temperature": float(t if t is not None else 1.0), "top_k": int(k) if k else self.vocab, "top_p": float(p if p is not None else 1.0)}

    def cancel(self, job: Job) -> None:
        self.cb.cancel_request(job.rid)
        self.forget(job.rid)
        self.slot.manager.count("cancelled", 1)
        self.done(job)

    def forget(self, rid: str) -> None:
        """A cancelled request gets no last output, so its handler is not removed for it."""
        private.forget_handler(self.cb, rid)

    def done(self, job: Job) -> None:
        if self.jobs.pop(job.rid, None) is not None and not self.jobs:
            self.slot.manager.count_batch(self.served)
            self.served = 0
        self.slot.touch()

    def stop(self, hard: bool) -> None:
        try:
            self.cb.stop(block=True, timeout=5 if hard else STOP_TIMEOUT_S, hard_stop=hard)
        except RuntimeError as exc:  # noqa: BLE001 - a paused manager: log, and let it go
            log.warning("could not stop continuous batching: %s", exc)


def prepare(gen, text: str, finish: Finish | None, sink: asyncio.Future | Stream) -> Job | None:
    """The text as the pipeline would run it (cut, checked, its prompt tokenized and cut to the context),
    or None once its outcome is settled (an empty text, or one the task refuses)."""
    value, cut = pipeline.clip_input(gen, text)
    error = pipeline.check_input(gen, value) if text.strip() else None
    if error is not None or not text.strip():
        Job.settle(sink, Outcome(None, error) if error is not None else Outcome(Result()))
        return None
    prompt = gen.chat_prompts([value])[0]
    ids = gen.tokenizer([prompt])["input_ids"][0]
    limit, dropped = private.prompt_limit(gen), 0
    if limit is not None and len(ids) > limit:
        ids, dropped = ids[-limit:], len(ids) - limit
    return Job(gen, text, prompt, list(ids), dropped, cut, finish, sink)


class Job:
    """One prompt in a manager: its tokens in; its text pieces (streamed) and its outcome out."""

    def __init__(self, task, text: str, prompt: str, ids: list[int], dropped: int, cut: int, finish: Finish | None, sink):
        self.task, self.text, self.prompt, self.ids = task, text, prompt, ids
        self.dropped, self.cut, self.finish = dropped, cut, finish
        self.future = sink if isinstance(sink, asyncio.Future) else None
        self.stream = sink if isinstance(sink, Stream) else None
        self.max_new_tokens = task.kwargs["max_new_tokens"]
        self.engine: Engine | None = None
        self.rid = ""
        self.peak = 1  # most requests in the manager while this one ran
        self.over = False
        self._rng: Any = None
        self._text = TextStream(task.tokenizer, ids) if self.stream is not None else None  # the streamed text
        self._fed = 0  # generated tokens the stream has had

    def share_rng(self) -> None:
        """On a worker thread: wait while a seeded generation holds torch's generators alone."""
        self._rng = RNG.shared()
        self._rng.__enter__()

    def on_output(self, output) -> None:
        """Each step's GenerationOutput (the last one finished), on the event loop."""
        if self.over:
            return
        if self.stream is not None and self.stream.cancelled.is_set():  # the reader has gone
            self.cancel()
            return
        if output.error is not None:
            self.fail(TfxError(f"generation failed: {output.error}", "Send the request again; the server's log has the details."))
        elif self.stream is not None and not output.is_finished():
            self._piece(list(output.generated_tokens))
        elif output.is_finished():
            self.succeed(list(output.generated_tokens))

    def _piece(self, new: list[int], last: bool = False) -> None:
        """Text that the new tokens complete (never half a character), sent down the stream; the last call
        sends what the stream still holds too."""
        pieces = [self._text.step(t) for t in new[self._fed :]]
        self._fed = len(new)
        if last:
            pieces.append(self._text.finish())
        text = "".join(p for p in pieces if p)
        if text:
            self.stream.put("text", text)

    def succeed(self, new: list[int]) -> None:
        output, count = private.decode(self.task, self.ids, new, self.prompt)
        result = GenerateResult(output=output, generated_tokens=count, truncated=self.dropped > 0, dropped_tokens=self.dropped)
        if self.cut:
            result.truncated, result.dropped_chars = True, self.cut
        if self.stream is not None:
            self._piece(new, last=True)
        extra = self.finish(self.task, self.text, result) if self.finish is not None else None
        outcome = Outcome(result, None, self.peak, extra)
        if self.engine is not None and hasattr(self.engine.slot.manager, "count_outcome"):
            self.engine.slot.manager.count_outcome(self.engine.slot, outcome)  # tokens, for /metrics
        self._end(outcome)

    def fail(self, exc: BaseException) -> None:
        self._end(exc)

    def cancel(self) -> None:
        if not self.over and self.engine is not None:
            self.engine.cancel(self)
        self._end(None)

    def _end(self, outcome: Outcome | BaseException | None) -> None:
        if self.over:
            return
        self.over = True
        if self.engine is not None:
            self.engine.done(self)
        if self._rng is not None:
            rng, self._rng = self._rng, None
            rng.__exit__(None, None, None)
        if outcome is not None:
            Job.settle(self.future if self.future is not None else self.stream, outcome)
        elif self.stream is not None:
            self.stream.finished()

    @staticmethod
    def settle(sink, outcome: Outcome | BaseException) -> None:
        if isinstance(sink, Stream):
            sink.put("error" if isinstance(outcome, BaseException) else "done", outcome)
            sink.finished()
        elif not sink.done():
            if isinstance(outcome, BaseException):
                sink.set_exception(outcome)
            else:
                sink.set_result(outcome)

