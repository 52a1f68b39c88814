"""One module per task. Each task turns a batch of input texts into plain result dicts; none prints."""

from __future__ import annotations

from typing import Any


def make_task(name: str, loaded, params: dict[str, Any]):
    if name == "generate":
        from tfx.tasks.generate import Generate

        return Generate(loaded, params)
    if name == "fill-mask":
        from tfx.tasks.fill_mask import FillMask

        return FillMask(loaded, params)
    if name == "translate":
        from tfx.tasks.seq2seq import Translate

        return Translate(loaded, params)
    if name == "summarize":
        from tfx.tasks.seq2seq import Summarize

        return Summarize(loaded, params)
    raise ValueError(name)


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
