"""The pipeline every task command runs: records in -> model -> records out, in input order.

Input is read by a thread into a bounded queue, so a huge input is never held at once and results are
written while later input is still arriving. Records are grouped into windows, sorted by length inside a
window to cut padding, run in batches, and written back in input order."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tfx import hub, io, registry
from tfx.errors import RecordError, TfxError, UsageError

log = logging.getLogger("tfx")

ENGINES = ("local", "ray")
WINDOW_BATCHES = 4  # a window holds this many batches, sorted by length together
QUEUE_RECORDS = 2048  # read-ahead bound: memory stays flat on a 1,000,000-line input
GATHER_WAIT_S = 0.05  # how long to wait for more input before running a partial window


@dataclass
class RunOptions:
    task: str
    texts: list[str]
    model: str | None = None
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    fmt: str = "text"
    input_path: str | None = None
    input_format: str = "text"
    batch_size: int | None = None
    quiet: bool = False
    verbose: bool = False
    keep_going: bool = False
    stream: bool | None = None
    trust_remote_code: bool = False
    server: str | None = None  # a `tfx serve` URL: the work is sent there
    engine: str = "local"  # local | ray
    output: str | None = None  # --engine ray: output directory
    output_format: str = "jsonl"
    ray_address: str | None = None
    replicas: int | None = None
    gpus_per_replica: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


def check_options(opts: RunOptions) -> None:
    """Everything that can be checked before a model is touched."""
    if opts.fmt not in io.FORMATS:
        raise UsageError(f"unknown --format '{opts.fmt}'.", f"Use one of: {', '.join(io.FORMATS)}.")
    if opts.input_format not in io.INPUT_FORMATS:
        raise UsageError(f"unknown --input-format '{opts.input_format}'.", "Use text or jsonl.")
    if opts.engine not in ENGINES:
        raise UsageError(f"unknown --engine '{opts.engine}'.", f"Use one of: {', '.join(ENGINES)}.")
    if opts.batch_size is not None and opts.batch_size < 1:
        raise UsageError("--batch-size must be at least 1.", "Leave it out for an automatic choice.")
    if opts.input_path is not None and opts.texts:
        raise UsageError("give the input either as arguments or with --input, not both.", "Drop one of them.")
    if any(not t.strip() for t in opts.texts if t != "-"):
        raise UsageError("the input text is empty.", "Pass some text, e.g. tfx generate \"Once upon a time\".")
    if not opts.texts and opts.input_path is None and sys.stdin.isatty():
        raise UsageError("no input.", "Give the text as an argument, pipe lines on stdin, or use --input FILE.")
    if opts.task in ("generate", "translate", "summarize"):
        from tfx.tasks.base import validate_generation

        validate_generation(opts.params)


def model_name(opts: RunOptions) -> str:
    if opts.model:
        return opts.model
    return registry.default_model(opts.task, opts.params.get("src") or "en", opts.params.get("tgt"))


def run(opts: RunOptions) -> int:
    """Run one task command; returns the exit status (1 when some record failed under --keep-going)."""
    check_options(opts)
    if opts.server:
        from tfx.client import run_remote

        return run_remote(opts)
    if opts.engine == "ray":
        from tfx.ray_engine import run_ray

        return run_ray(opts)
    name = model_name(opts)
    resolved = hub.resolve(name, opts.revision)
    from tfx import loading

    config = loading.read_json(resolved.path / "config.json")
    loading.check_task(resolved, opts.task, config)
    if opts.task in ("generate", "translate", "summarize"):
        from tfx.tasks.base import validate_generation

        validate_generation(opts.params, loading.read_json(resolved.path / "generation_config.json"))
    from tfx import devices

    device = devices.pick_device(opts.device)
    dtype = devices.pick_dtype(opts.dtype, device)
    started = time.monotonic()
    log.info("loading %s from %s on %s (%s)", name, resolved.path, device, str(dtype).replace("torch.", ""))
    loaded = loading.load(resolved, opts.task, device, dtype, opts.trust_remote_code, opts.verbose, engine=opts.engine)
    log.info("loaded %s in %.2f s", name, time.monotonic() - started)
    from tfx.tasks import make_task

    streaming = wants_stream(opts)
    params = dict(opts.params)
    if streaming:
        params["on_text"] = stdout_text
    return pump_records(opts, make_task(opts.task, loaded, params), name, streaming)


def pump_records(opts: RunOptions, task, name: str, streaming: bool) -> int:
    """Read the records, run them through task (local or remote) and write one result each."""
    from tfx.tasks import table_renderer, text_renderer

    writer = io.Writer(opts.fmt, text_renderer(opts.task, opts.params), model=name)
    table = table_renderer(opts.task, opts.params) if opts.fmt == "text" and sys.stdout.isatty() else None
    records = io.read_records(opts.texts, opts.input_path, opts.input_format)
    return Pump(task, writer, opts, table, streaming).run(records)


def wants_stream(opts: RunOptions) -> bool:
    if opts.task != "generate" or opts.fmt != "text" or len(opts.texts) != 1 or opts.texts == ["-"]:
        return False
    p = opts.params
    if (p.get("num_return_sequences") or 1) > 1 or (p.get("num_beams") or 1) > 1:
        return False
    return opts.stream if opts.stream is not None else sys.stdout.isatty()


def stdout_text(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class Pump:
    def __init__(self, task, writer: io.Writer, opts: RunOptions, table, streaming: bool):
        self.task = task
        self.writer = writer
        self.opts = opts
        self.table = table
        self.streaming = streaming
        self.batch_size = opts.batch_size or task.default_batch_size()
        self.failed = 0
        self.progress = Progress(opts, io.input_size(opts.input_path))

    def run(self, records: Iterator[io.Record]) -> int:
        try:
            for window in windows(prefetch(records), self.batch_size * WINDOW_BATCHES):
                self.progress.start_if(len(window) > 1)
                self.process(window)
        finally:
            self.progress.stop()
        return 1 if self.failed else 0

    def process(self, window: list[io.Record]) -> None:
        errors: dict[int, str] = {}
        stop: io.Record | None = None
        for record in window:
            error = record.error
            if error is None and record.text.strip():
                try:
                    self.task.check(record.text)
                except RecordError as exc:
                    error = str(exc)
            if error is not None:
                if not self.opts.keep_going:
                    stop = record
                    errors[record.index] = error
                    break
                errors[record.index] = error
        todo = window if stop is None else window[: window.index(stop)]
        results = self.compute([r for r in todo if r.index not in errors and r.text.strip()])
        for record in todo:
            result = results.get(record.index, {"output": ""})
            error = errors.get(record.index, result.get("error"))
            if error is not None and not self.opts.keep_going:
                stop, errors[record.index] = record, error  # a record the model side refused (remote)
                break
            if error is not None:
                self.failed += 1
                print(f"tfx: {record.where}: {error}", file=sys.stderr)
                self.writer.write(record, None, error=error)
            else:
                self.emit(record, result)
        if stop is not None:
            raise TfxError(
                f"{stop.where}: {errors[stop.index]}.",
                "Fix that record, or pass --keep-going to write an error record and go on.",
            )

    def compute(self, records: list[io.Record]) -> dict[int, dict[str, Any]]:
        results: dict[int, dict[str, Any]] = {}
        ordered = sorted(records, key=lambda r: self.task.cost(r.text))
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            if self.streaming and not self.opts.params.get("continuation_only"):
                stdout_text(batch[0].text)
            outs = self.task.run([r.text for r in batch])
            for record, out in zip(batch, outs):
                results[record.index] = out
            self.progress.advance(len(batch), sum(o.get("generated_tokens", 0) for o in outs))
        return results

    def emit(self, record: io.Record, result: dict[str, Any]) -> None:
        if self.streaming:
            stdout_text("\n")
        elif self.table is not None and "predictions" in result:
            render_table(record.text, self.table(result))
        else:
            self.writer.write(record, result)


def render_table(title: str, rows: list[tuple[str, ...]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("mask", "rank", "token", "score", title=title, title_justify="left")
    for row in rows:
        table.add_row(*row)
    Console(file=sys.stdout, color_system=None, highlight=False, emoji=False).print(table)
    sys.stdout.flush()


def prefetch(records: Iterator[io.Record]) -> queue.Queue:
    """Read records on a thread into a bounded queue; a sentinel (None) or an exception ends it."""
    q: queue.Queue = queue.Queue(maxsize=QUEUE_RECORDS)

    def reader() -> None:
        try:
            for record in records:
                q.put(record)
            q.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            q.put(exc)

    threading.Thread(target=reader, name="tfx-reader", daemon=True).start()
    return q


def windows(q: queue.Queue, size: int) -> Iterator[list[io.Record]]:
    """Yield lists of up to `size` records: wait for the first, then take what arrives soon after."""
    done = False
    while not done:
        first = q.get()
        if isinstance(first, BaseException):
            raise first
        if first is None:
            return
        window = [first]
        deadline = time.monotonic() + GATHER_WAIT_S
        while len(window) < size:
            try:
                item = q.get(timeout=max(deadline - time.monotonic(), 0) if q.empty() else 0)
            except queue.Empty:
                break
            if isinstance(item, BaseException):
                yield window
                raise item
            if item is None:
                done = True
                break
            window.append(item)
        yield window


class Progress:
    """records done, records/s, tokens/s and an ETA on stderr, only for a person watching a terminal."""

    def __init__(self, opts: RunOptions, total: int | None):
        self.enabled = not opts.quiet and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
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
        self.bar_task = self.bar.add_task(self.opts_label(), total=self.total, rate="")
        self.bar.start()

    def opts_label(self) -> str:
        return "records"

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
