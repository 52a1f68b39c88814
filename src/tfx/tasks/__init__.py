"""One module per task. Each task turns a batch of input texts into plain result dicts; none prints."""

from __future__ import annotations

from typing import Any


def task_class(name: str):
    """The Task class for a command name; importing it loads no model."""
    if name == "generate":
        from tfx.tasks.generate import Generate

        return Generate
    if name == "fill-mask":
        from tfx.tasks.fill_mask import FillMask

        return FillMask
    if name == "translate":
        from tfx.tasks.seq2seq import Translate

        return Translate
    if name == "summarize":
        from tfx.tasks.seq2seq import Summarize

        return Summarize
    raise ValueError(name)


def make_task(name: str, loaded, params: dict[str, Any]):
    return task_class(name)(loaded, params)


def default_batch_size(name: str, device: str) -> int:
    """The batch size a task chooses on `device`, without a model (it depends on the device alone), so remote
    and Ray runs group records exactly as a local run does."""
    cls = task_class(name)
    probe = cls.__new__(cls)
    probe.device = device
    return probe.default_batch_size()


def text_renderer(name: str, params: dict[str, Any]):
    """result dict -> the one-line text form, for a task and its options (no model needed)."""
    if name == "generate":
        from tfx.tasks.generate import generate_text

        return generate_text
    if name == "fill-mask" and params.get("top_k") is not None:
        from tfx.tasks.fill_mask import candidates_text

        return candidates_text
    return lambda result: result.get("output", "")


def table_renderer(name: str, params: dict[str, Any]):
    """result dict -> table rows for a terminal, or None where the task shows no table."""
    if name == "fill-mask" and params.get("top_k") is not None:
        from tfx.tasks.fill_mask import table_rows

        return table_rows
    return None
