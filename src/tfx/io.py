"""Reading records (arguments, stdin lines, files, JSONL) and writing results (text, jsonl, tsv).

Input is read lazily, line by line, as bytes, so a bad line is reported by number and invalid UTF-8 is an
error record rather than a crash. Writers flush per record so a pipeline sees results as they are made."""

from __future__ import annotations

import json
import re
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tfx.results import Result

# Fields tfx writes into a jsonl record. A passed-through input field of the same name would be overwritten
# (or make a good record look failed), so such a record is refused with a message naming the field.
RESERVED_FIELDS = ("input", "output", "outputs", "model", "error", "predictions", "generated_tokens", "truncated", "dropped_tokens", "dropped_chars")
# The longest input line read as a record (bytes, without its newline). A longer line is that line's error
# record, skipped in 1 MiB reads without being held: a 100 MB line costs a few MiB of memory, not the tens
# of GB that tokenizing it whole would. 32 MiB holds a long book (War and Peace is 3.2 MB).
MAX_LINE_BYTES = 32 << 20


@dataclass
class Record:
    index: int  # position in the input, 0-based
    line: int  # line number in its source, 1-based (argument number for arguments)
    text: str
    extra: dict[str, Any] = field(default_factory=dict)  # JSONL pass-through fields
    error: str | None = None  # why this record cannot be processed, if it cannot
    kind: str = "line"  # "line" for stdin and files, "argument" for command-line texts
    pair: str | None = None  # a second input (qa: the record's own context)
    size: int = 0  # bytes read for it (0: not known, its text's length stands in)

    @property
    def where(self) -> str:
        return f"{self.kind} {self.line}"

    @property
    def held(self) -> int:
        """About how much memory the record holds, for the read-ahead bounds."""
        return self.size or len(self.text) + len(self.pair or "")

    @property
    def input(self) -> str | tuple[str, str]:
        """What the task runs on: the text, or (text, pair) when the record has a second input."""
        return self.text if self.pair is None else (self.text, self.pair)


@dataclass(frozen=True)
class Fields:
    """Which JSONL fields a task reads: its input ("text" always works too), an optional second input
    (qa: "context"), and the fields it writes itself (a passed-through field of that name is refused)."""

    input: str = "text"
    pair: str | None = None
    reserved: tuple[str, ...] = RESERVED_FIELDS


TEXT_FIELDS = Fields()


def read_records(args: list[str], input_path: str | None, input_format: str, stdin: IO[bytes] | None = None, fields: Fields = TEXT_FIELDS) -> Iterator[Record]:
    """Each argument is a record; with none (or '-'), each stdin line is; --input reads a file."""
    if input_path is not None:
        yield from _lines(_open_input(input_path), input_format, close=True, fields=fields)
    elif args and args != ["-"]:
        for i, arg in enumerate(args):
            record = _parse(i, i + 1, arg, input_format, fields)
            record.kind = "argument"
            yield record
    else:
        yield from _lines(stdin or sys.stdin.buffer, input_format, fields=fields)


def _open_input(path: str) -> IO[bytes]:
    from tfx.errors import TfxError

    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by _lines
    except OSError as exc:
        raise TfxError(f"cannot read --input {path}: {exc.strerror}.", "Check the path.") from None


def input_size(path: str | None) -> int | None:
    """Number of records in a regular file (for an ETA), counted cheaply; None when unknown. Only a regular
    file is counted: a FIFO or /dev/fd/N would be read up by the count, leaving nothing to run."""
    if not path or path == "-":
        return None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            count = 0
            last = b"\n"
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                count += chunk.count(b"\n")
                last = chunk[-1:]
            return count + (last != b"\n")
    except OSError:
        return None


def _lines(stream: IO[bytes], input_format: str, close: bool = False, fields: Fields = TEXT_FIELDS) -> Iterator[Record]:
    try:
        for i, (raw, size) in enumerate(_raw_lines(stream, MAX_LINE_BYTES)):
            if raw is None:
                yield Record(i, i + 1, "", error=f"the line is {size:,} bytes, over tfx's limit of {MAX_LINE_BYTES >> 20} MiB for one record; split it", size=size)
                continue
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.endswith(b"\r"):
                line = line[:-1]
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                # The record fails, but keeps what it can (a JSONL line's id) so it can still be joined back.
                record = _parse(i, i + 1, line.decode("utf-8", "replace"), input_format, fields)
                record.error = f"invalid UTF-8 at byte {exc.start}"
                record.size = size
                yield record
                continue
            record = _parse(i, i + 1, text, input_format, fields)
            record.size = size
            yield record
    finally:
        if close:
            stream.close()


def _raw_lines(stream: IO[bytes], cap: int) -> Iterator[tuple[bytes | None, int]]:
    """Each line's bytes (newline included) and size; (None, size) for a line over `cap` bytes, read past
    in 1 MiB pieces rather than held."""
    while True:
        raw = stream.readline(cap + 1)
        if not raw:
            return
        if len(raw) <= cap or raw.endswith(b"\n"):
            yield raw, len(raw)
            continue
        size = len(raw)
        while True:
            more = stream.readline(1 << 20)
            size += len(more)
            if not more or more.endswith(b"\n"):
                break
        yield None, size


class ReadAhead:
    """A queue between the reading thread and the pipeline, bounded in items and in bytes: put blocks
    while either bound is reached (one item is always let in, however large). get/empty as queue.Queue."""

    def __init__(self, max_items: int, max_bytes: int):
        import collections
        import threading

        self.max_items, self.max_bytes = max_items, max_bytes
        self.items: collections.deque = collections.deque()
        self.bytes = 0
        self.cond = threading.Condition()

    def put(self, item: Any, size: int = 0) -> None:
        with self.cond:
            while self.items and (len(self.items) >= self.max_items or self.bytes + size > self.max_bytes):
                self.cond.wait()
            self.items.append((item, size))
            self.bytes += size
            self.cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        import queue

        with self.cond:
            if not self.cond.wait_for(lambda: self.items, timeout):
                raise queue.Empty
            item, size = self.items.popleft()
            self.bytes -= size
            self.cond.notify_all()
            return item

    def empty(self) -> bool:
        with self.cond:
            return not self.items


def _parse(index: int, line: int, text: str, input_format: str, fields: Fields = TEXT_FIELDS) -> Record:
    if input_format == "tsv" and text.strip():
        return _parse_tsv(index, line, text, fields)
    if input_format != "jsonl" or not text.strip():
        return Record(index, line, text)
    try:
        obj = json.loads(text, parse_constant=_no_constant, parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        return Record(index, line, text, error=f"invalid JSON ({json_problem(exc)})")
    if not isinstance(obj, dict):
        return Record(index, line, text, error='a JSONL record must be an object with a "text" field')
    value = obj.pop(fields.input, None) if fields.input in obj else obj.pop("text", None)
    if not isinstance(value, str):
        named = f'"{fields.input}" (or "text")' if fields.input != "text" else '"text"'
        return Record(index, line, text, extra=obj, error=f"no {named} field (a string) in the JSON object")
    pair = obj.pop(fields.pair, None) if fields.pair else None
    if pair is not None and not isinstance(pair, str):
        return Record(index, line, value, extra=obj, error=f'field "{fields.pair}" must be a string')
    clash = [k for k in fields.reserved if k in obj]
    if clash:
        return Record(index, line, value, extra={k: v for k, v in obj.items() if k not in clash}, pair=pair,
                      error=f'field "{clash[0]}" is one tfx writes itself; rename it (other fields are passed through)')  # fmt: skip
    return Record(index, line, value, extra=obj, pair=pair)


_TSV_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def unescape_tsv(text: str) -> str:
    """escape_tsv's inverse: \\t, \\n, \\r and \\\\ back to what they stand for; any other backslash stays."""
    return re.sub(r"\\([tnr\\])", lambda m: _TSV_ESCAPES[m.group(1)], text)


def _parse_tsv(index: int, line: int, text: str, fields: Fields) -> Record:
    """A tsv record: the first column is the input (a task with a second input, qa's context, takes the
    second column); further columns are passed through as "columns"."""
    columns = [unescape_tsv(c) for c in text.split("\t")]
    pair = columns.pop(1) if fields.pair and len(columns) > 1 else None
    extra = {"columns": columns[1:]} if len(columns) > 1 else {}
    return Record(index, line, columns[0], extra=extra, pair=pair)


def json_problem(exc: BaseException) -> str:
    """What is wrong with a JSON line, and where (a column), in words a user can act on."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


MAX_INT_DIGITS = 4300  # Python's own limit on int() of a string (sys.get_int_max_str_digits' default)


def _parse_int(digits: str) -> int:
    """JSON integers as json.loads reads them, with a message of ours past Python's digit limit."""
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number with more than {MAX_INT_DIGITS} digits; quote it as a string")
    return int(digits)


def _no_constant(name: str):
    """NaN and Infinity are not JSON: passed through, they would make the output unreadable as JSON."""
    raise ValueError(f"{name} is not a JSON value")


def escape_line(text: str) -> str:
    """Keep one record on one line: newlines become the two characters \\n (jsonl keeps the exact text)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def escape_tsv(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


class Writer:
    """Writes one output record per input record, in the chosen format, flushing each: text (the result's
    one-line form, or a table on a terminal where the result has one), jsonl, tsv, or a token stream."""

    def __init__(self, fmt: str, out: IO[str] | None = None, model: str | None = None, table: bool = False, err: IO[str] | None = None, echo: bool = True):
        self.fmt = fmt
        self.echo = echo  # a stream starts with the prompt (generate without --continuation-only)
        self.out = out or sys.stdout
        self.err = err
        self.model = model
        self.table = table and fmt == "text"

    def write(self, record: Record, result: Result | None, error: str | None = None, flush: bool = True) -> None:
        if error is not None:
            print(f"tfx: {record.where}: {error}", file=self.err or sys.stderr)
        rows = result.table() if self.table and result is not None and error is None else None
        if rows is not None:
            print_table(list(result.columns), [list(r) for r in rows], title=record.text, out=self.out, force_table=True)
            return
        self.out.write(self.render(record, result, error))
        if flush:
            self.out.flush()

    def render(self, record: Record, result: Result | None, error: str | None = None) -> str:
        if self.fmt == "jsonl":
            obj: dict[str, Any] = dict(record.extra)
            obj["input"] = record.text
            if error is not None:
                obj["error"] = error
            else:
                obj.update((result or Result()).record())
                if self.model:
                    obj["model"] = self.model
            return json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n"
        if error is not None:
            return "\n" if self.fmt == "text" else escape_tsv(record.text) + "\t\n"
        result = result or Result()
        if self.fmt == "tsv":
            return escape_tsv(record.text) + "\t" + escape_tsv(result.output) + "\n"
        return escape_line(result.text()) + "\n"

    # a token stream: the prompt (unless the task returns only new text), the pieces, a newline
    def stream_start(self, record: Record) -> None:
        if self.echo:
            self.stream_text(record.text)

    def stream_text(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def stream_end(self, record: Record, result: Result | None) -> None:
        self.stream_text("\n")

    def finish(self) -> None:
        """After the last record: a writer that holds records back (rank sorts its lines) writes them."""


def read_json(path: Path) -> dict:
    """A JSON object from a model's file (config.json, tokenizer_config.json, ...); {} when the file is
    missing, unreadable, not JSON or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_lines(lines: Iterable[str], out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    for line in lines:
        out.write(line + "\n")
    out.flush()


def print_table(columns: list[str], rows: list[list[str]], title: str | None = None, out: IO[str] | None = None, force_table: bool = False) -> None:
    """A rich table on a terminal; on a pipe, plain aligned columns with no colour, one row per line."""
    out = out or sys.stdout
    if force_table or out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, title=title, title_justify="left")
        for row in rows:
            table.add_row(*row)
        Console(file=out, highlight=False, emoji=False, color_system=None if force_table else "auto").print(table)
        out.flush()
        return
    cells = [[escape_line(str(c)) for c in row] for row in [columns, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [title] if title else []
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    out.write("\n".join(lines) + "\n")
    out.flush()


def print_json(obj: Any, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    out.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    out.flush()


def write_json_line(obj: Any, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    out.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
    out.flush()
