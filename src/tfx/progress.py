"""Progress on stderr (records done, records/s, tokens/s, ETA), only for a person watching a terminal."""

from __future__ import annotations

import os
import sys
import time


class Progress:
    def __init__(self, quiet: bool, total: int | None):
        self.enabled = not quiet and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self.total = total
        self.bar = None
        self.done = 0
        self.tokens = 0
        self.started = time.monotonic()

    def start_if(self, several: bool) -> None:
        if self.bar is not None or not self.enabled or not (several or (self.total or 0) > 1):
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        self.bar = Bar(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self.bar_task = self.bar.add_task("records", total=self.total, rate="")
        self.bar.start()

    def advance(self, records: int, tokens: int) -> None:
        self.done += records
        self.tokens += tokens
        if self.bar is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = f"{self.done / elapsed:.1f} rec/s"
        if self.tokens:
            rate += f" {self.tokens / elapsed:.0f} tok/s"
        self.bar.update(self.bar_task, advance=records, rate=rate)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class NoProgress(Progress):
    def __init__(self):
        super().__init__(True, None)
