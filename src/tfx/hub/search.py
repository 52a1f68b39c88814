"""Searching the Hub for transformers models (`tfx search`), and `with_deadline`, which bounds a library
call that has no time-out of its own."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from tfx import errors
from tfx.hub.settings import is_offline, quiet_hub_logs

# HfApi.list_models retries a failed connection five times with back-off and sends no time-out at all,
# so a search runs on a thread that is given up on after this long.
SEARCH_DEADLINE_S = 8.0


def search(query: str | None, task: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Hub models (transformers ones) matching query, most downloaded first. `task` is a pipeline tag."""
    with errors.about(action="search"):
        if is_offline():
            # What huggingface_hub raises for any request in offline mode; raised here so no thread starts.
            from huggingface_hub.errors import OfflineModeIsEnabled

            raise OfflineModeIsEnabled("search needs the Hub and offline mode is on")
        quiet_hub_logs()
        from huggingface_hub import HfApi

        def call() -> list[dict[str, Any]]:
            found = HfApi().list_models(search=query or None, pipeline_tag=task, filter="transformers", sort="downloads", limit=limit)
            return [{"id": m.id, "task": m.pipeline_tag, "downloads": m.downloads or 0, "likes": m.likes or 0} for m in found]

        rows = with_deadline(call, SEARCH_DEADLINE_S)
    return sorted(rows, key=lambda r: r["downloads"], reverse=True)


def with_deadline(call: Callable[[], Any], seconds: float) -> Any:
    """call() on a daemon thread; TimeoutError if it has not returned after `seconds` (it is abandoned)."""
    box: queue.Queue = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            box.put((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.put((False, exc))

    threading.Thread(target=run, name="tfx-hub", daemon=True).start()
    try:
        ok, value = box.get(timeout=seconds)
    except queue.Empty:
        raise TimeoutError(f"no answer from the Hub in {seconds:.0f} s") from None
    if not ok:
        raise value
    return value
