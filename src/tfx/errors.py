"""The kinds of error tfx raises (TfxError: a message and a hint that names the fix) and `about`, which
attaches what a message must name (the model, the server) to any exception on its way to a catch point.
The bottom layer: it imports nothing of tfx. The table that explains library exceptions is explain.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class TfxError(Exception):
    """An error with a message for the user and a hint that names the fix. exit_code 1, or 2 for usage;
    http_status is what the server answers for it."""

    http_status = 400
    code = "invalid_request"

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message

    def __reduce__(self):  # picklable with its hint and exit code: Ray ships errors between processes
        return (_rebuild, (type(self), self.message, self.hint, self.exit_code))


def _rebuild(cls, message, hint, exit_code):
    error = cls.__new__(cls)
    TfxError.__init__(error, message, hint, exit_code)
    return error


class UsageError(TfxError):
    """The command line (or a request's parameters) asks for something impossible: exit 2."""

    code = "invalid_parameter"

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 2):
        super().__init__(message, hint, exit_code)


class ModelNotFound(TfxError):
    """The model is neither in the cache nor to be had from the Hub (the server answers 404)."""

    http_status = 404
    code = "model_not_found"


class NotCached(ModelNotFound):
    """The model is not in the local cache and may not be downloaded (offline, or a server without --allow-pull)."""


class HubUnreachable(NotCached):
    """The model is not cached and the Hub cannot be reached."""


class TaskMismatch(TfxError):
    """The model's family (or head) cannot do the task."""

    code = "model_task_mismatch"


class ServerError(TfxError):
    """The machine's trouble, not the request's: out of memory, unreadable weights (the server answers 503)."""

    http_status = 503
    code = "model_failed"


class RecordError(Exception):
    """One input record cannot be processed; the run stops there unless --keep-going."""


# ---- context: what a message names ---------------------------------------------------------------------


@contextmanager
def about(**context: Any) -> Iterator[None]:
    """Attach context (model=, revision=, server=, action=) to any exception raised inside; the innermost
    `about` wins for each key. The exception itself goes on unchanged, to the one catch point."""
    try:
        yield
    except BaseException as exc:
        known = getattr(exc, "tfx_context", None)
        try:
            exc.tfx_context = {**context, **(known or {})}
        except AttributeError:  # an exception type with __slots__: it goes on without context
            pass
        raise


def context_of(exc: BaseException) -> dict[str, Any]:
    for e in chain(exc):
        found = getattr(e, "tfx_context", None)
        if found:
            return found
    return {}


def keep_tracebacks() -> bool:
    """Under tests (pytest in this process) or with TFX_DEBUG=1 an unknown exception keeps its traceback."""
    return os.environ.get("TFX_DEBUG") == "1" or "pytest" in sys.modules


def one_line(exc: BaseException) -> str:
    """The line shown for an exception nobody mapped (with TFX_DEBUG=1 it is shown whole instead)."""
    return f"{type(exc).__name__}: {first_line(exc)} (TFX_DEBUG=1 shows the traceback)"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
