"""Reading records (arguments, stdin lines, files, JSONL) and writing results (text, jsonl, tsv).

Input is read lazily, line by line, as bytes, so a bad line is reported by number and invalid UTF-8 is an
error record rather than a crash. Writers flush per record so a pipeline sees results as they are made."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

FORMATS = ("text", "jsonl", "tsv")
INPUT_FORMATS = ("text", "jsonl")


@dataclass
class Record:
    index: int  # position in the input, 0-based
    line: int  # line number in its source, 1-based (argument number for arguments)
    text: str
    extra: dict[str, Any] = field(default_factory=dict)  # JSONL pass-through fields
    error: str | None = None  # why this record cannot be processed, if it cannot
    kind: str = "line"  # "line" for stdin and files, "argument" for command-line texts

    @property
    def where(self) -> str:
        return f"{self.kind} {self.line}"


def read_records(args: list[str], input_path: str | None, input_format: str, stdin: IO[bytes] | None = None) -> Iterator[Record]:
    """Each argument is a record; with none (or '-'), each stdin line is; --input reads a file."""
    if input_path is not None:
        yield from _lines(_open_input(input_path), input_format, close=True)
    elif args and args != ["-"]:
        for i, arg in enumerate(args):
            record = _parse(i, i + 1, arg, input_format)
            record.kind = "argument"
            yield record
    else:
        yield from _lines(stdin or sys.stdin.buffer, input_format)


def _open_input(path: str) -> IO[bytes]:
    from tfx.errors import TfxError

    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by _lines
    except OSError as exc:
        raise TfxError(f"cannot read --input {path}: {exc.strerror}.", "Check the path.") from None


def input_size(path: str | None) -> int | None:
    """Number of records in a regular file (for an ETA), counted cheaply; None when unknown."""
    if not path or path == "-":
        return None
    try:
        with open(path, "rb") as handle:
            count = 0
            last = b"\n"
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                count += chunk.count(b"\n")
                last = chunk[-1:]
            return count + (last != b"\n")
    except OSError:
        return None


def _lines(stream: IO[bytes], input_format: str, close: bool = False) -> Iterator[Record]:
    try:
        for i, raw in enumerate(stream):
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.endswith(b"\r"):
                line = line[:-1]
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Record(i, i + 1, line.decode("utf-8", "replace"), error=f"invalid UTF-8 at byte {exc.start}")
                continue
            yield _parse(i, i + 1, text, input_format)
    finally:
        if close:
            stream.close()


def _parse(index: int, line: int, text: str, input_format: str) -> Record:
    if input_format != "jsonl" or not text.strip():
        return Record(index, line, text)
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return Record(index, line, text, error=f"invalid JSON ({exc.msg})")
    if not isinstance(obj, dict):
        return Record(index, line, text, error='a JSONL record must be an object with a "text" field')
    value = obj.pop("text", None)
    if not isinstance(value, str):
        return Record(index, line, text, extra=obj, error='no "text" field (a string) in the JSON object')
    return Record(index, line, value, extra=obj)


def escape_line(text: str) -> str:
    """Keep one record on one line: newlines become the two characters \\n (jsonl keeps the exact text)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def escape_tsv(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


class Writer:
    """Writes one output record per input record, in the chosen format, flushing each."""

    def __init__(self, fmt: str, text_of, out: IO[str] | None = None, model: str | None = None):
        self.fmt = fmt
        self.text_of = text_of  # result dict -> the one-line text form for --format text
        self.out = out or sys.stdout
        self.model = model

    def write(self, record: Record, result: dict[str, Any] | None, error: str | None = None, flush: bool = True) -> None:
        self.out.write(self.render(record, result, error))
        if flush:
            self.out.flush()

    def render(self, record: Record, result: dict[str, Any] | None, error: str | None = None) -> str:
        if self.fmt == "jsonl":
            obj: dict[str, Any] = dict(record.extra)
            obj["input"] = record.text
            if error is not None:
                obj["error"] = error
            else:
                obj.update(result or {})
                if self.model:
                    obj["model"] = self.model
            return json.dumps(obj, ensure_ascii=False) + "\n"
        if error is not None:
            return "\n" if self.fmt == "text" else escape_tsv(record.text) + "\t\n"
        if self.fmt == "tsv":
            return escape_tsv(record.text) + "\t" + escape_tsv(result.get("output", "")) + "\n"
        return escape_line(self.text_of(result)) + "\n"


def write_lines(lines: Iterable[str], out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    for line in lines:
        out.write(line + "\n")
    out.flush()
