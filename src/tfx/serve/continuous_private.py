"""Every use of PRIVATE names that continuous batching (serve.continuous_engine) makes, in one place: the parts
of transformers' ContinuousBatchingManager that have no public API, and the generate task's prompt cut and
decoding (tasks.generate keeps them underscored). `check()` looks each one up; tests/test_serve_security.py
calls it, so a transformers release that moves one fails there with a message naming it, not as a hang or
a wrong answer in a running server.

transformers' private state used (transformers 5.x, generation/continuous_batching/continuous_api.py):
- `manager.output_router._lock` and `.result_handlers`: a cancelled request gets no last output, so the
  handler `register_result_handler` installed is never removed; there is no public unregister.
- `manager.batch_processor`: set by the generation thread once it is ready; `start()` returns before that,
  and there is no public "started" event.
- `manager.logit_processor.logits_processor` and `cb_logits_processors.ContinuousBatchingLogitsProcessor`:
  which of the model's logits processors the manager cannot run per request (no public list)."""

from __future__ import annotations

import time
from typing import Any

CB_MODULE = "transformers.generation.continuous_batching.cb_logits_processors"


def forget_handler(manager: Any, request_id: str) -> None:
    """Drop a request's result handler (a cancelled request's, which transformers would keep forever)."""
    router = manager.output_router
    with router._lock:
        router.result_handlers.pop(request_id, None)


def wait_until_started(manager: Any, timeout_s: float) -> bool:
    """After manager.start(): wait until its generation thread has built its batch processor."""
    deadline = time.monotonic() + timeout_s
    while manager.batch_processor is None and manager.is_running() and time.monotonic() < deadline:
        time.sleep(0.005)
    return manager.batch_processor is not None and manager.is_running()


def unsupported_processors(manager: Any) -> list[str]:
    """The model's logits processors the manager cannot apply per request (names; [] when none)."""
    from transformers.generation.continuous_batching.cb_logits_processors import ContinuousBatchingLogitsProcessor as base

    return [type(p).__name__ for p in manager.logit_processor.logits_processor if not isinstance(p, base)]


def prompt_limit(gen: Any) -> int | None:
    """The generate task's most prompt tokens (tasks.generate.Generate._prompt_limit)."""
    return gen._prompt_limit()


def decode(gen: Any, prompt_ids: list[int], new_ids: list[int], prompt: str) -> tuple[str, int]:
    """The generate task's decoding of a continuation, as its window batches decode it (Generate._decode)."""
    return gen._decode(prompt_ids, new_ids, prompt)


def check() -> list[str]:
    """What of the above the installed transformers and tfx no longer have: one line each ([] when all is there)."""
    import inspect

    from transformers.generation.continuous_batching import cb_logits_processors, continuous_api

    missing = []
    for name in ("ContinuousBatchingLogitsProcessor", "ContinuousBatchingLogitsProcessorList"):
        if not hasattr(cb_logits_processors, name):
            missing.append(f"{CB_MODULE}.{name}")

    router = continuous_api.OutputRouter()
    for name in ("_lock", "result_handlers"):
        if not hasattr(router, name):
            missing.append(f"OutputRouter.{name}")
    init = inspect.getsource(continuous_api.ContinuousBatchingManager.__init__)
    for name in ("self.batch_processor", "self.logit_processor", "self.output_router"):
        if name not in init:
            missing.append(f"ContinuousBatchingManager: {name} (set in __init__)")
    lists = getattr(cb_logits_processors, "ContinuousBatchingLogitsProcessorList", None)
    if lists is not None and "self.logits_processor" not in inspect.getsource(lists.__init__):
        missing.append("ContinuousBatchingLogitsProcessorList.logits_processor")
    from tfx.tasks.generate import Generate

    for name in ("_prompt_limit", "_decode"):
        if not callable(getattr(Generate, name, None)):
            missing.append(f"tfx.tasks.generate.Generate.{name}")
    return missing
