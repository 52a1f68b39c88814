"""--engine ray's input: which files --input names (a file, a directory, a glob or a URI), in a fixed order,
and how they are cut into shards of whole local-engine windows. A record's id is its file's number and its
line (or parquet row), so a retried shard holds the very same records. Reading a shard is source.py's job."""

from __future__ import annotations

import fnmatch
import itertools
import os
import re
from dataclasses import dataclass

from tfx.errors import TfxError, first_line

PARQUET_SUFFIXES = (".parquet", ".pq")
WINDOWS_PER_SHARD = 8  # a shard (one output file, one unit of retry) holds up to this many local windows
SHARDS_PER_REPLICA = 2  # ...but a small input is cut finer, so that every replica gets some
SCAN_CHUNK = 1 << 22  # bytes read at a time when finding where each window starts
_GLOB = re.compile(r"[*?\[]")


def filesystem(uri: str):
    """A pyarrow filesystem and the path on it: s3://, gs://, abfs://, hdfs://, file:// or a local path."""
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow says which scheme or credential is missing
        raise TfxError(f"cannot open {uri}: {first_line(exc)}", "Check the URI and the storage credentials.") from None


@dataclass(frozen=True)
class Shard:
    """One read task: lines [first, first + rows) of a text file from byte `start` to `stop`; a parquet row
    group; or a whole compressed file (rows unknown)."""

    src: int  # the file's number in Inputs.paths
    first: int  # 1-based line (or row) number of its first record
    start: int  # byte offset (text) or row group (parquet)
    stop: int | None
    rows: int | None


def compression(path: str) -> str | None:
    import pyarrow as pa

    try:
        return pa.Codec.detect(path).name
    except (ValueError, TypeError):
        return None


def is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIXES)


class Inputs:
    """The input files in a fixed order (a record's id is its file's number and its line) and their shards."""

    def __init__(self, spec: str, input_format: str):
        self.spec = spec
        self.input_format = input_format
        self.fs, path = filesystem(spec)
        self.paths = self._expand(path)
        if not self.paths:
            raise TfxError(f"--input {spec} matches no files.", "Check the path or the glob.")
        self.total: int | None = None

    def _expand(self, path: str) -> list[str]:
        from pyarrow import fs

        if not _GLOB.search(path):
            info = self.fs.get_file_info(path)
            if info.type == fs.FileType.File:
                return [path]
            if info.type != fs.FileType.Directory:
                raise TfxError(f"cannot read --input {self.spec}: no such file or directory.", "Check the path.")
            return self._listing(path, recursive=True, keep=lambda p: True)
        parts = path.split("/")
        first = next(i for i, part in enumerate(parts) if _GLOB.search(part))
        base = "/".join(parts[:first]) or "/"
        depth = path.count("/")
        deep = "**" in path
        return self._listing(base, recursive=deep or first < len(parts) - 1, keep=lambda p: fnmatch.fnmatchcase(p, path) and (deep or p.count("/") == depth))

    def _listing(self, base: str, recursive: bool, keep) -> list[str]:
        from pyarrow import fs

        found = self.fs.get_file_info(fs.FileSelector(base, recursive=recursive, allow_not_found=True))
        hidden = lambda p: any(part.startswith((".", "_")) for part in p[len(base) :].split("/"))  # noqa: E731 - Ray's own rule
        return sorted(i.path for i in found if i.type == fs.FileType.File and not hidden(i.path) and keep(i.path))

    def plan(self, window: int, replicas: int) -> tuple[list[Shard], int]:
        """Shards of whole windows, WINDOWS_PER_SHARD of them (fewer for a small input), and their size."""
        cuts = [self._cuts(src, path, window) for src, path in enumerate(self.paths)]
        counts = [c[0] for c in cuts]
        self.total = None if None in counts else sum(counts)
        per_shard = WINDOWS_PER_SHARD
        if self.total is not None:
            per_shard = max(1, min(per_shard, self.total // (window * replicas * SHARDS_PER_REPLICA)))
        shards = []
        for src, (rows, marks) in enumerate(cuts):
            if rows is None or is_parquet(self.paths[src]):
                shards += marks
                continue
            marks = marks[::per_shard]
            for i, (first, start) in enumerate(marks):
                last, stop = marks[i + 1] if i + 1 < len(marks) else (rows + 1, None)
                shards.append(Shard(src, first, start, stop, last - first))
        return shards, window * per_shard

    def _cuts(self, src: int, path: str, window: int) -> tuple[int | None, list]:
        """(records, marks): for a text file, (line, byte offset) where each window starts, found by one
        pass over its bytes; for parquet, one shard per row group; a compressed file is one shard."""
        if is_parquet(path):
            import pyarrow.parquet as pq

            with self.fs.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
            sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            firsts = itertools.accumulate([1, *sizes])
            return meta.num_rows, [Shard(src, first, g, None, n) for g, (n, first) in enumerate(zip(sizes, firsts)) if n]
        if compression(path):
            return None, [Shard(src, 1, 0, None, None)]
        return scan_lines(self.fs, path, window)

    def kind(self, src: int) -> str:
        """What a record of file `src` is called in a message: "line" (or "row"), after the file's name
        when --input matched several: a record's `where` is then "<kind> <line>", as locally."""
        kind = "row" if is_parquet(self.paths[src]) else "line"
        scheme = self.spec[: self.spec.index("://") + 3] if "://" in self.spec else ""
        return kind if len(self.paths) == 1 else f"{scheme}{self.paths[src]}: {kind}"


def scan_lines(fs, path: str, window: int) -> tuple[int, list[tuple[int, int]]]:
    """Count a text file's lines as io.input_size does, noting (line, byte offset) at every window start."""
    import numpy as np

    marks: list[tuple[int, int]] = []
    lines = pos = 0
    last = b"\n"
    with fs.open_input_stream(path, compression=None) as handle:
        while chunk := handle.read(SCAN_CHUNK):
            newlines = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
            # a window starts after newline number k * window (k >= 0); the first one at byte 0
            starts = np.arange(-(lines + 1) % window, len(newlines), window)
            marks += [(lines + int(j) + 2, pos + int(newlines[j]) + 1) for j in starts]
            if pos == 0:
                marks.insert(0, (1, 0))
            lines += len(newlines)
            pos += len(chunk)
            last = chunk[-1:]
    total = lines + (last != b"\n")
    return total, [m for m in marks if m[0] <= total]
