"""Cancellation that lands at the next token (issue 20 #3): while the server runs a transformers generation
for requests whose clients may leave, a stopping criterion asks at every decoding step whether anyone still
wants the answer, and stops the generation when nobody does. A stream is checked even while it yields no
visible text, a batch stops once every request in it has gone (the rows of requests still wanted run on).

It rides on the task's own generate kwargs (`task.kwargs`, which the generate, translate and summarize tasks
pass to `model.generate`), set for one run and taken off after it, so a task kept for the next request
never carries an old request's check. The fast GPT-2 path has a hook of its own (`FastPath.stop_when`,
asked after every token). CTranslate2 takes no criteria: its streams stop at the next visible piece, its
batches run to their (capped) end."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

KEY = "stopping_criteria"  # model.generate's own argument


@contextlib.contextmanager
def watching(task: Any, wanted: Callable[[], bool]) -> Iterator[None]:
    """While the block runs, the task's generation stops at its next token once wanted() is False."""
    kwargs = getattr(task, "kwargs", None)
    fast = getattr(task, "fast", None)
    if fast is not None:  # the fast GPT-2 path asks its own hook after every token (no transformers import)
        fast.stop_when = lambda: not wanted()
        try:
            yield
        finally:
            fast.stop_when = None
        return
    if not isinstance(kwargs, dict) or not getattr(task, "takes_criteria", True):
        yield  # nothing to hook: no model.generate (CTranslate2 stops at its next visible piece)
        return
    from transformers import StoppingCriteriaList  # heavy: only on the model's thread, with a model loaded

    before = kwargs.get(KEY)
    kwargs[KEY] = StoppingCriteriaList([*(before or []), _criterion(wanted)])
    try:
        yield
    finally:
        if before is None:
            kwargs.pop(KEY, None)
        else:
            kwargs[KEY] = before


def _criterion(wanted: Callable[[], bool]):
    import torch
    from transformers import StoppingCriteria

    class NobodyWaits(StoppingCriteria):
        """True for every row once nobody wants the answer; checked once per decoding step."""

        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), not wanted(), dtype=torch.bool, device=input_ids.device)

    return NobodyWaits()
