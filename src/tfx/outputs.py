"""The writers a task needs beyond io.Writer's one line per record: rank's lines best first (held until the
last record, then sorted), embed's vectors as tab-separated numbers (--format tsv), and embed's big-run
files (--output FILE|DIR with --output-format npy or parquet), written as the records come so memory stays
flat. pipeline.run_spec asks `writer_for(spec)` and calls `finish()` once the records are done."""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import IO, Any

from tfx import io
from tfx.errors import TfxError, UsageError
from tfx.io import Record, Writer, escape_line, escape_tsv
from tfx.results import EmbedResult, RankResult, Result, _floats
from tfx.spec import VECTOR_FORMATS, RunSpec



def writer_for(spec: RunSpec, table: bool) -> Writer:
    """The writer of a run: the task's own where it has one, io.Writer otherwise."""
    common = dict(model=spec.model, table=table, echo=not getattr(spec.settings, "continuation_only", False))
    if spec.task == "rank":
        return RankWriter(spec.output.format, top_k=spec.settings.top_k, **common)
    if spec.task == "embed" and spec.output.path is not None:
        return VectorFile(spec.output.path, spec.output.shard_format, model=spec.model)
    if spec.task == "embed":
        return EmbedWriter(spec.output.format, **common)
    return Writer(spec.output.format, **common)


def report(record: Record, error: str) -> None:
    print(f"tfx: {record.where}: {error}", file=sys.stderr)  # as io.Writer does


class EmbedWriter(Writer):
    """tsv: the input, then each number, tab-separated (text: the numbers, space-separated; jsonl: a list)."""

    def render(self, record: Record, result: Result | None, error: str | None = None) -> str:
        if self.fmt == "tsv" and error is None and isinstance(result, EmbedResult):
            return escape_tsv(record.text) + "\t" + "\t".join(map(repr, _floats(result.embedding))) + "\n"
        return super().render(record, result, error)


class RankWriter(Writer):
    """rank's output: every scored line held, then written best first (ties in input order), the --top-k
    best only. text: score<TAB>line (a table on a terminal); tsv the same, tab-escaped; jsonl: the record
    with score and index (the line's place in the input). Records that failed (--keep-going) come last in
    jsonl and tsv; empty lines are not documents and are left out."""

    def __init__(self, fmt: str, top_k: int | None = None, **kwargs: Any):
        super().__init__(fmt, **kwargs)
        self.top_k = top_k
        self.scored: list[tuple[Record, RankResult]] = []
        self.failed: list[tuple[Record, str]] = []

    def write(self, record: Record, result: Result | None, error: str | None = None, flush: bool = True) -> None:
        if error is not None:
            report(record, error)
            self.failed.append((record, error))
        elif isinstance(result, RankResult):
            self.scored.append((record, result))

    def finish(self) -> None:
        best = sorted(self.scored, key=lambda pair: -pair[1].score)[: self.top_k]
        self.scored = []
        if self.table and best:
            io.print_table(["rank", "score", "line"], [[str(n), f"{r.score:.4f}", rec.text] for n, (rec, r) in enumerate(best, 1)], out=self.out, force_table=True)
            return
        lines = []
        for record, result in best:
            result.index = record.index
            if self.fmt == "jsonl":
                lines.append(self.render(record, result))
            elif self.fmt == "tsv":
                lines.append(f"{result.score:.6f}\t{escape_tsv(record.text)}\n")
            else:
                lines.append(f"{result.score:.4f}\t{escape_line(record.text)}\n")
        if self.fmt != "text":
            lines += [self.render(record, None, error) for record, error in self.failed]
        self.out.write("".join(lines))
        self.out.flush()


class VectorFile(Writer):
    """embed --output: one row per input record, in input order. npy: a float32 matrix [records, dimensions]
    (a failed or empty record's row is NaN); parquet: columns input, embedding (a list of float32), error,
    and the jsonl input's other fields; jsonl: the stdout records, into a file."""

    GROUP = 4096  # parquet rows per row group

    def __init__(self, path: str, fmt: str, model: str | None = None):
        super().__init__("jsonl", model=model)
        if fmt not in VECTOR_FORMATS:
            raise UsageError(f"unknown --output-format '{fmt}' for embed.", f"Use one of: {', '.join(VECTOR_FORMATS)}.")
        self.kind, self.path = fmt, vector_path(path, fmt)
        try:
            self.file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed by finish
        except OSError as exc:
            raise TfxError(f"cannot write --output {self.path}: {exc.strerror}.", "Check the path.") from None
        self.rows = self.waiting = 0
        self.size: int | None = None
        self.pending: list[tuple[Record, Any, str | None]] = []
        self.parquet = self.schema = None
        if self.kind == "npy":
            self.file.write(npy_header(0, 0))

    def write(self, record: Record, result: Result | None, error: str | None = None, flush: bool = True) -> None:
        if error is not None:
            report(record, error)
        vector = result.embedding if error is None and isinstance(result, EmbedResult) else None
        if self.kind == "jsonl":
            self.file.write(self.render(record, result, error).encode("utf-8"))
        elif self.kind == "npy":
            self._npy_row(vector)
        else:
            self.pending.append((record, vector, error))
            if len(self.pending) >= self.GROUP:
                self._parquet_group()
        self.rows += 1

    def _npy_row(self, vector) -> None:
        import numpy as np

        if vector is None:
            if self.size is None:
                self.waiting += 1  # its NaN row is written once the width is known
            else:
                self.file.write(np.full(self.size, np.nan, dtype="<f4").tobytes())
            return
        vector = np.asarray(vector, dtype="<f4").ravel()
        if self.size is None:
            self.size = len(vector)
            self.file.write(np.full((self.waiting, self.size), np.nan, dtype="<f4").tobytes())
        elif len(vector) != self.size:
            raise TfxError(f"embeddings of {len(vector)} and {self.size} numbers cannot share one .npy file.", "Use one model and one --dimensions.")
        self.file.write(vector.tobytes())

    def _parquet_group(self) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise TfxError("--output-format parquet needs pyarrow, which is not installed.", 'Run: pip install pyarrow (or "tfx-cli[ray]"), or use --output-format npy.') from None

        rows = []
        for record, vector, error in self.pending:
            rows.append({**record.extra, "input": record.text, "embedding": None if vector is None else _floats(vector), "error": error})
        self.pending = []
        if self.schema is None:
            fields = [pa.field("input", pa.string()), pa.field("embedding", pa.list_(pa.float32())), pa.field("error", pa.string())]
            extra = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in ("input", "embedding", "error")} for r in rows]).schema
            self.schema = pa.schema(fields + [f for f in extra if f.name not in ("input", "embedding", "error")])
            self.parquet = pq.ParquetWriter(self.file, self.schema)
        try:
            table = pa.Table.from_pylist(rows, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise TfxError(f"a pass-through field changed type between records ({str(exc).splitlines()[0]}).", "Give each field one type, or use --output-format jsonl.") from None
        self.parquet.write_table(table)

    def finish(self) -> None:
        if self.file.closed:
            return
        if self.kind == "npy":
            self.file.seek(0)
            self.file.write(npy_header(self.rows, self.size or 0))
        elif self.kind == "parquet":
            if self.pending or self.parquet is None:
                self._parquet_group()
            self.parquet.close()
        self.file.close()
        print(f"tfx: {self.rows} embeddings -> {self.path}", file=sys.stderr)


def vector_path(path: str, fmt: str) -> Path:
    """--output names the file, or a directory (existing, or ending in /) that gets embeddings.<format>."""
    out = Path(path).expanduser()
    if out.is_dir() or path.endswith(("/", "\\")):
        out.mkdir(parents=True, exist_ok=True)
        return out / f"embeddings.{fmt}"
    if not out.parent.is_dir():
        raise UsageError(f"--output {path}: the directory {out.parent} does not exist.", "Create it first, or give another path.")
    return out


NPY_HEADER_BYTES = 128  # room for any shape: the header is rewritten in place with the final row count


def npy_header(rows: int, size: int) -> bytes:
    """A version 1.0 .npy header for a little-endian float32 C-order matrix, padded to a fixed length."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {size}), }}"
    room = NPY_HEADER_BYTES - 10 - 1
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", room + 1) + text.ljust(room).encode("latin1") + b"\n"

