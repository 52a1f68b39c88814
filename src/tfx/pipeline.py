"""The one pipeline: records -> windows -> per-record checks -> length-sorted batches -> results in input
order -> --keep-going error records. The local engine, the --server client, the Ray replicas, the
server's batcher, `tfx compare` and the benchmark harness all call it.

Input is read by a thread into a bounded queue, so a huge input is never held at once and results are
written while later input is still arriving. Records are grouped into windows, sorted by length inside a
window to cut padding, run in batches, and written back in input order. Ctrl-C writes the records whose
results exist, in order, before the run ends with 130."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from tfx import io
from tfx.errors import RecordError, TfxError
from tfx.io import Record, Writer
from tfx.progress import NoProgress, Progress
from tfx.results import Failed, Result, TextChunk
from tfx.spec import RunSpec

WINDOW_BATCHES = 4  # a window holds this many batches, sorted by length together
QUEUE_RECORDS = 2048  # read-ahead bound: memory stays flat on a 1,000,000-line input
GATHER_WAIT_S = 0.05  # how long to wait for more input before running a partial window


class Runner(Protocol):
    """What the pipeline runs records through: a local task, or a remote one (--server)."""

    batch_size: int

    def check(self, text: str) -> None: ...  # raises RecordError
    def cost(self, text: str) -> int: ...
    def run(self, texts: list[str]) -> list[Result]: ...
    def stream(self, text: str) -> Iterator[TextChunk | Result]: ...


@dataclass
class Done:
    """One record's outcome: a result, or the error that makes it an error record."""

    record: Record
    result: Result | None = None
    error: str | None = None


def check_record(runner: Runner, record: Record) -> str | None:
    """Why this record cannot run (the reader's error or the task's refusal), or None. Empty text runs as
    an empty record."""
    if record.error is not None:
        return record.error
    if not record.text.strip():
        return None
    try:
        runner.check(record.text)
    except RecordError as exc:
        return str(exc)
    return None


def process(
    runner: Runner,
    window: list[Record],
    keep_going: bool,
    batch_size: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    results: dict[int, Result] | None = None,
) -> tuple[list[Done], Done | None]:
    """One window: checks, then batches by length, then outcomes in input order. Without keep_going the
    first bad record ends the window: the outcomes before it come back with that record as the stop."""
    errors: dict[int, str] = {}
    stop: Record | None = None
    for record in window:
        error = check_record(runner, record)
        if error is not None:
            errors[record.index] = error
            if not keep_going:
                stop = record
                break
    todo = window if stop is None else window[: window.index(stop)]
    results = {} if results is None else results
    compute(runner, [r for r in todo if r.index not in errors and r.text.strip()], batch_size or runner.batch_size, on_batch, results)
    done: list[Done] = []
    for record in todo:
        result = results.get(record.index) or Result()
        error = errors.get(record.index, result.error if isinstance(result, Failed) else None)
        if error is not None and not keep_going:  # a record the model side refused (remote)
            return done, Done(record, error=error)
        done.append(Done(record, None if error is not None else result, error))
    return done, (Done(stop, error=errors[stop.index]) if stop is not None else None)


def compute(runner: Runner, records: list[Record], batch_size: int, on_batch=None, results: dict[int, Result] | None = None) -> dict[int, Result]:
    """Results by record index, the records run in batches of similar length."""
    results = {} if results is None else results
    ordered = sorted(records, key=lambda r: runner.cost(r.text))
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        outs = runner.run([r.text for r in batch])
        for record, out in zip(batch, outs):
            results[record.index] = out
        if on_batch is not None:
            on_batch(len(batch), sum(o.tokens for o in outs))
    return results


def run_texts(runner: Runner, texts: list[str], batch_size: int | None = None, on_batch=None) -> list[Done]:
    """Texts in, one outcome each (errors included), in order: the server's batches."""
    records = [Record(i, i + 1, text) for i, text in enumerate(texts)]
    done, _ = process(runner, records, True, batch_size, on_batch)
    return done


def stop_error(stop: Done) -> TfxError:
    return TfxError(f"{stop.record.where}: {stop.error}.", "Fix that record, or pass --keep-going to write an error record and go on.")


def run_spec(spec: RunSpec, runner: Runner) -> int:
    """A spec's input through runner (a local task, or the remote one) into its output."""
    streaming = wants_stream(spec)
    writer = io.Writer(spec.output.format, model=spec.model, table=sys.stdout.isatty(), echo=not getattr(spec.settings, "continuation_only", False))
    records = io.read_records(list(spec.inputs.texts), spec.inputs.path, spec.inputs.format)
    progress = Progress(spec.quiet, io.input_size(spec.inputs.path))
    return run(records, runner, writer, spec.keep_going, spec.batch_size, progress, stream=streaming)


def wants_stream(spec: RunSpec) -> bool:
    """Tokens as they come: generate, one prompt given as an argument, text output, one sequence."""
    texts = spec.inputs.texts
    if spec.task != "generate" or spec.output.format != "text" or len(texts) != 1 or texts == ("-",):
        return False
    if not spec.settings.streamable():
        return False
    return spec.output.stream if spec.output.stream is not None else sys.stdout.isatty()


def run(
    records: Iterable[Record],
    runner: Runner,
    writer: Writer,
    keep_going: bool = False,
    batch_size: int | None = None,
    progress: Progress | None = None,
    stream: bool = False,
) -> int:
    """Read the records, run them, write one output record each; returns the exit status (1 when some
    record failed under --keep-going). A bad record without --keep-going raises after what came before it
    is written."""
    batch_size = batch_size or runner.batch_size
    progress = progress or NoProgress()
    failed = 0
    try:
        for window in windows(prefetch(records), batch_size * WINDOW_BATCHES):
            progress.start_if(len(window) > 1)
            if stream:
                done, stop = streamed(runner, window, writer)
            else:
                partial: dict[int, Result] = {}
                try:
                    done, stop = process(runner, window, keep_going, batch_size, progress.advance, partial)
                except KeyboardInterrupt:
                    write_finished(window, partial, writer)
                    raise
            for d in done:
                if d.error is not None:
                    failed += 1
                writer.write(d.record, d.result, d.error)
            if stop is not None:
                raise stop_error(stop)
    finally:
        progress.stop()
    return 1 if failed else 0


def write_finished(window: list[Record], results: dict[int, Result], writer: Writer) -> None:
    """Ctrl-C mid-window: write the records whose results exist, in input order, up to the first that has none."""
    for record in window:
        if record.index not in results and record.text.strip():
            return
        writer.write(record, results.get(record.index) or Result())


def streamed(runner: Runner, window: list[Record], writer: Writer) -> tuple[list[Done], Done | None]:
    """One record at a time, its text written as it is made (a prompt on a terminal)."""
    for record in window:
        error = check_record(runner, record)
        if error is not None:
            return [], Done(record, error=error)
        writer.stream_start(record)
        result: Result | None = None
        for item in runner.stream(record.text):
            if isinstance(item, TextChunk):
                writer.stream_text(item.text)
            else:
                result = item
        if isinstance(result, Failed):
            return [], Done(record, error=result.error)
        writer.stream_end(record, result)
    return [], None


def prefetch(records: Iterable[Record]) -> queue.Queue:
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


def windows(q: queue.Queue, size: int) -> Iterator[list[Record]]:
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
