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

from tfx import io, outputs, split
from tfx.errors import RecordError, TfxError
from tfx.io import Record, Writer
from tfx.progress import NoProgress, Progress
from tfx.results import Failed, Result, TextChunk
from tfx.spec import RunSpec

WINDOW_BATCHES = 4  # a window holds this many batches, sorted by length together
QUEUE_RECORDS = 2048  # read-ahead bound: memory stays flat on a 1,000,000-line input
QUEUE_BYTES = 64 << 20  # ... and in bytes of input, so a few huge lines cannot fill memory either
WINDOW_BYTES = 64 << 20  # a window is cut short once its records hold this much input
GATHER_WAIT_S = 0.05  # how long to wait for more input before running a partial window


class Runner(Protocol):
    """What the pipeline runs records through: a local task, or a remote one (--server)."""

    batch_size: int

    # An input is a text, or (text, pair) for a task with a second input (qa: question, context).
    def check(self, text: str | tuple[str, str]) -> None: ...  # raises RecordError
    def cost(self, text: str | tuple[str, str]) -> int: ...
    def run(self, texts: list) -> list[Result]: ...
    def stream(self, text: str) -> Iterator[TextChunk | Result]: ...


@dataclass
class Done:
    """One record's outcome: a result, or the error that makes it an error record."""

    record: Record
    result: Result | None = None
    error: str | None = None
    keeping: str = ""  # what of a too-long input the runner keeps, for the warning


def keeping(runner: Runner) -> str:
    """What a runner keeps of a too-long input ("" when it does not say: a remote one)."""
    if getattr(runner, "char_window", None) is not None:
        return "the text around its masks"
    if getattr(runner, "max_chars", None) is None:
        return ""
    return "its last part" if getattr(runner, "keep", "start") == "end" else "its first part"


def check_record(runner: Runner, record: Record) -> str | None:
    """Why this record cannot run (the reader's error or the task's refusal), or None. Empty text runs as
    an empty record."""
    if record.error is not None:
        return record.error
    if not record.text.strip():
        return None
    return check_input(runner, clip_input(runner, record.input)[0])


def check_input(runner: Runner, value) -> str | None:
    try:
        runner.check(value)
    except RecordError as exc:
        return str(exc)
    return None


def clip(runner: Runner, text: str) -> tuple[str, int]:
    """The text cut to the runner's `max_chars` before anything tokenizes it (an 8 MB line is not
    tokenized whole), keeping the start, the end (keep == "end") or the runner's char_window; and how
    many characters were dropped."""
    return split.clip(text, getattr(runner, "max_chars", None), getattr(runner, "keep", "start"), getattr(runner, "char_window", None))


def clip_input(runner: Runner, value) -> tuple[object, int]:
    """clip() for a text, or for each text of a (text, pair) input."""
    if isinstance(value, tuple):
        cut = [clip(runner, v) for v in value]
        return tuple(c[0] for c in cut), sum(c[1] for c in cut)
    return clip(runner, value)


def process(
    runner: Runner,
    window: list[Record],
    keep_going: bool,
    batch_size: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    results: dict[int, Result] | None = None,
    report: Callable[[Done], None] | None = None,
) -> tuple[list[Done], Done | None]:
    """One window: cuts and checks, then batches by length, then outcomes in input order. Without
    keep_going the first bad record ends the window: the outcomes before it come back with that record as
    the stop. `report` hears of each finished record (default: a warning for what was cut)."""
    errors: dict[int, str] = {}
    inputs: dict[int, tuple[object, int]] = {}
    stop: Record | None = None
    for record in window:
        error = record.error
        if error is None and record.text.strip():
            inputs[record.index] = clip_input(runner, record.input)
            error = check_input(runner, inputs[record.index][0])
        if error is not None:
            errors[record.index] = error
            if not keep_going:
                stop = record
                break
    todo = window if stop is None else window[: window.index(stop)]
    results = {} if results is None else results
    items = [(r.index, *inputs[r.index]) for r in todo if r.index in inputs and r.index not in errors]
    compute(runner, items, batch_size or runner.batch_size, on_batch, results)
    report = report or warn_cuts
    done: list[Done] = []
    for record in todo:
        result = results.get(record.index) or Result()
        error = errors.get(record.index, result.error if isinstance(result, Failed) else None)
        if error is not None and not keep_going:  # a record the model side refused (remote)
            return done, Done(record, error=error)
        done.append(Done(record, None if error is not None else result, error, keeping(runner)))
        report(done[-1])
    return done, (Done(stop, error=errors[stop.index]) if stop is not None else None)


def compute(runner: Runner, items: list[tuple[int, object, int]], batch_size: int, on_batch=None, results: dict[int, Result] | None = None) -> dict[int, Result]:
    """Results by record index for (index, input, characters clip() dropped) items, run in batches of
    similar length. A runner with `parts` (translate) has each text split into its sentences first: all
    the window's sentences are batched together by length, and each record's are joined back once its
    last one is done. on_batch(records finished, tokens) follows each model batch."""
    results = {} if results is None else results
    parts_of = getattr(runner, "parts", None)
    jobs: list[tuple[int, int, object]] = []  # (record index, part number or -1, input)
    split_up: dict[int, tuple[split.Parts, list]] = {}
    dropped = {index: cut for index, _, cut in items}
    for index, value, _ in items:
        parts = parts_of(value) if parts_of is not None and isinstance(value, str) else None
        if parts is None or not parts.texts:
            jobs.append((index, -1, value))
        else:
            split_up[index] = (parts, [None] * len(parts.texts))
            jobs += [(index, j, text) for j, text in enumerate(parts.texts)]

    def finish(index: int, result: Result) -> None:
        if dropped[index]:
            result.truncated, result.dropped_chars = True, dropped[index]
        results[index] = result

    ordered = sorted(jobs, key=lambda job: runner.cost(job[2]))
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        outs = runner.run([job[2] for job in batch])
        finished = 0
        for (index, j, _), out in zip(batch, outs):
            if j >= 0:
                parts, got = split_up[index]
                got[j] = out
                if any(g is None for g in got):
                    continue
                out = next((g for g in got if isinstance(g, Failed)), None) or split.join(parts, got)
            finish(index, out)
            finished += 1
        if on_batch is not None:
            on_batch(finished, sum(o.tokens for o in outs))
    return results


def run_texts(runner: Runner, texts: list, batch_size: int | None = None, on_batch=None) -> list[Done]:
    """Inputs in (texts, or (text, pair) tuples), one outcome each (errors included), in order: the
    server's batches."""
    records = [Record(i, i + 1, t[0], pair=t[1]) if isinstance(t, tuple) else Record(i, i + 1, t) for i, t in enumerate(texts)]
    done, _ = process(runner, records, True, batch_size, on_batch, report=lambda d: None)  # the client reports
    return done


def warn_cuts(done: Done) -> None:
    """Once per record: what was cut from its input, and how a long input was read."""
    if done.result is not None:
        split.warn_cuts(done.record.where, done.result, done.keeping)


class CutReport(split.CutReport):
    def __call__(self, done: Done) -> None:
        if done.result is not None:
            self.add(done.record.where, done.result, done.keeping)


def stop_error(stop: Done) -> TfxError:
    return TfxError(f"{stop.record.where}: {stop.error}.", "Fix that record, or pass --keep-going to write an error record and go on.")


def few_arguments(spec: RunSpec) -> bool:
    """Inputs given as arguments, fewer than a screenful: their results come at once, with no bar before them."""
    import shutil

    texts = [t for t in spec.inputs.texts if t != "-"]
    return spec.inputs.path is None and len(texts) == len(spec.inputs.texts) and 0 < len(texts) < shutil.get_terminal_size((80, 24)).lines


def run_spec(spec: RunSpec, runner: Runner) -> int:
    """A spec's input through runner (a local task, or the remote one) into its output."""
    streaming = wants_stream(spec)
    writer = outputs.writer_for(spec, table=sys.stdout.isatty())  # io.Writer, or the task's own (rank, embed)
    records = io.read_records(list(spec.inputs.texts), spec.inputs.path, spec.inputs.format, fields=input_fields(spec.task))
    progress = Progress(spec.quiet or few_arguments(spec), io.input_size(spec.inputs.path))
    try:
        return run(records, runner, writer, spec.keep_going, spec.batch_size, progress, stream=streaming, quiet=spec.quiet)
    finally:
        writer.finish()


def window_batches(task: str) -> int:
    """Batches per window: WINDOW_BATCHES, or the task's own (embed sorts 32 batches' records together, as
    sentence-transformers sorts its whole input, its results being small). Every engine asks here, so the
    same records meet in the same batches everywhere."""
    from tfx.tasks import task_class

    return getattr(task_class(task), "window_batches", WINDOW_BATCHES)


def input_fields(task: str) -> io.Fields:
    """The JSONL fields a task reads, and those it writes (refused as pass-through fields)."""
    from dataclasses import fields

    from tfx import registry
    from tfx.results import RESULTS

    info = registry.task_info(task)
    written = tuple(f.name for f in fields(RESULTS[info.name]))
    return io.Fields(info.input_field, info.pair_field, tuple(dict.fromkeys(io.RESERVED_FIELDS + written)))


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
    quiet: bool = False,
) -> int:
    """Read the records, run them, write one output record each; returns the exit status (1 when some
    record failed under --keep-going). A bad record without --keep-going raises after what came before it
    is written."""
    batch_size = batch_size or runner.batch_size
    progress = progress or NoProgress()
    failed = 0
    report = CutReport(quiet)
    try:
        for window in windows(prefetch(records), batch_size * getattr(runner, "window_batches", WINDOW_BATCHES)):
            progress.start_if(len(window) > 1)
            if stream:
                done, stop = streamed(runner, window, writer, report)
            else:
                partial: dict[int, Result] = {}
                try:
                    done, stop = process(runner, window, keep_going, batch_size, progress.advance, partial, report)
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
        report.summary(writer.err)
    return 1 if failed else 0


def write_finished(window: list[Record], results: dict[int, Result], writer: Writer) -> None:
    """Ctrl-C mid-window: write the records whose results exist, in input order, up to the first that has none."""
    for record in window:
        if record.index not in results and record.text.strip():
            return
        writer.write(record, results.get(record.index) or Result())


def streamed(runner: Runner, window: list[Record], writer: Writer, report: Callable[[Done], None] = warn_cuts) -> tuple[list[Done], Done | None]:
    """One record at a time, its text written as it is made (a prompt on a terminal)."""
    for record in window:
        error = record.error
        if error is None and record.text.strip():
            text, dropped = clip(runner, record.text)
            error = check_input(runner, text)
        if error is not None:
            return [], Done(record, error=error)
        writer.stream_start(record)
        result: Result | None = None
        for item in runner.stream(text):
            if isinstance(item, TextChunk):
                writer.stream_text(item.text)
            else:
                result = item
        if isinstance(result, Failed):
            return [], Done(record, error=result.error)
        if result is not None and dropped:
            result.truncated, result.dropped_chars = True, dropped
        writer.stream_end(record, result)
        report(Done(record, result, keeping=keeping(runner)))
    return [], None


def prefetch(records: Iterable[Record]) -> io.ReadAhead:
    """Read records on a thread into a queue bounded in records and in bytes; a sentinel (None) or an
    exception ends it."""
    q = io.ReadAhead(QUEUE_RECORDS, QUEUE_BYTES)

    def reader() -> None:
        try:
            for record in records:
                q.put(record, record.held)
            q.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            q.put(exc)

    threading.Thread(target=reader, name="tfx-reader", daemon=True).start()
    return q


def windows(q: io.ReadAhead, size: int, max_bytes: int | None = None) -> Iterator[list[Record]]:
    """Yield lists of up to `size` records (and about WINDOW_BYTES of input): wait for the first, then take
    what arrives soon after."""
    max_bytes = max_bytes or WINDOW_BYTES
    done = False
    while not done:
        first = q.get()
        if isinstance(first, BaseException):
            raise first
        if first is None:
            return
        window, held = [first], first.held
        deadline = time.monotonic() + GATHER_WAIT_S
        while len(window) < size and held < max_bytes:
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
            held += item.held
        yield window
