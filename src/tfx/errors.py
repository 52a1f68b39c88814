"""Errors tfx knows how to explain: TfxError, and the table that turns library exceptions into one line
that names the fix."""

from __future__ import annotations


class TfxError(Exception):
    """An error with a message for the user and a hint that names the fix. exit_code 1, or 2 for usage."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class UsageError(TfxError):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, exit_code=2)


class RecordError(Exception):
    """One input record cannot be processed; the run stops there unless --keep-going."""


def explain(exc: BaseException) -> TfxError | None:
    """Map a known library exception to a TfxError; None keeps unknown ones loud."""
    if isinstance(exc, TfxError):
        return exc
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if name == "OutOfMemoryError" or "CUDA out of memory" in text:
        return TfxError(
            "the device ran out of memory.",
            "Try a smaller --batch-size, --dtype float16, or --device cpu.",
        )
    if isinstance(exc, MemoryError):
        return TfxError("out of memory.", "Try a smaller --batch-size or a smaller model.")
    if name in {"SafetensorsError", "HeaderTooLarge"} or "safetensors" in text.lower() and "error" in text.lower():
        return TfxError(f"the model's weights could not be read ({text}).", "Run `tfx pull MODEL` again to refetch them.")
    return None
