"""One byte-counting progress bar on stderr for a whole model download, fed by snapshot_download's
`tqdm_class` hook; nothing at all when disabled (a pipe, --quiet) and for dry runs.

What snapshot_download does with `tqdm_class`, measured in huggingface_hub 2.4.0 (pinned by
tests/test_hub_cache.py): each call makes three bars from the class, a file counter (no unit, update(1)
per file) and two byte bars (unit="B"): one for the bytes written to disk and one for the bytes received.
Over plain HTTP both byte bars get every chunk; with Xet the received bar counts the (smaller) network
bytes. Its per-file bars are its own, and forward to those two. So tfx shows, per call, the furthest of the
byte bars: the bytes of the model on disk, never counted twice."""

from __future__ import annotations

import sys
import threading
from typing import Any


class DownloadBar:
    def __init__(self, total: int, label: str, enabled: bool):
        self.progress = None
        self._lock = threading.Lock()
        self._calls: list[list[Any]] = []  # per snapshot_download call: its byte bars
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self.task = self.progress.add_task(label, total=total or None)
        self.progress.start()

    @property
    def completed(self) -> int:
        with self._lock:
            return sum(max((int(b.n) for b in call), default=0) for call in self._calls)

    def _refresh(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.completed)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def tqdm_class(self) -> type:
        """A tqdm stand-in for ONE snapshot_download (or hf_hub_download) call; call again for the next."""
        owner = self
        bars: list[Any] = []
        with self._lock:
            self._calls.append(bars)

        class Hook:
            """The part of tqdm's interface huggingface_hub uses; any other method is a no-op."""

            def __init__(self, *args: Any, **kwargs: Any):
                self.n = 0
                self.total = kwargs.get("total")
                self.desc = kwargs.get("desc", "")
                self.format_dict: dict[str, Any] = {}
                if kwargs.get("unit") == "B":
                    with owner._lock:
                        bars.append(self)
                    initial = kwargs.get("initial") or 0
                    if initial:
                        self.update(initial)

            def __enter__(self):
                return self

            def __exit__(self, *exc: Any) -> None:
                pass

            def update(self, n: float | None = 1) -> None:
                if not n:
                    return
                with owner._lock:
                    self.n += n
                if self in bars:
                    owner._refresh()

            def update_transfer(self, n: float | None = 1) -> None:
                pass  # network bytes of a single-file download (Xet); the bar counts file bytes

            def close(self) -> None:
                pass

            def __getattr__(self, name: str):
                if name.startswith("_"):
                    raise AttributeError(name)
                return _nothing

        return Hook


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None
