"""--engine ray's output: the --output directory (new or empty), and the shards written into it, one file per
input shard, named after its first record so that name order is input order. A shard appears only once
complete, and a retry rewrites it with the same records: every record is written exactly once."""

from __future__ import annotations

import json
import uuid

from tfx.engines.ray.inputs import filesystem
from tfx.errors import UsageError


def prepare_output(output: str):
    """The output directory, which must be new or empty: old shards would mix with this run's."""
    from pyarrow import fs

    out_fs, out_dir = filesystem(output)
    out_dir = out_dir.rstrip("/") or "/"
    info = out_fs.get_file_info(out_dir)
    if info.type == fs.FileType.File:
        raise UsageError(f"--output {output} is a file.", "Give a directory for the output shards.")
    if info.type == fs.FileType.Directory and out_fs.get_file_info(fs.FileSelector(out_dir)):
        raise UsageError(f"--output {output} is not empty.", "Give a new or empty directory, so old shards cannot mix with this run's.")
    out_fs.create_dir(out_dir, recursive=True)
    return out_fs, out_dir


def shard_name(src: int, line: int, shard_format: str) -> str:
    """Named after the shard's first record: file number, then line."""
    return f"part-{src:06d}-{line:012d}.{shard_format}"


def shard_bytes(lines: list[str], shard_format: str) -> bytes:
    """jsonl: the local engine's lines as they are. parquet: the same records as columns."""
    if shard_format == "jsonl":
        return "".join(lines).encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in lines]
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {k: [row.get(k) for row in rows] for k in names}
    columns.setdefault("error", [None] * len(rows))  # every shard has the column, errors or not
    table = pa.table({k: pa.array(v, pa.string()) if k == "error" else v for k, v in columns.items()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_shard(out_fs, out_dir: str, name: str, data: bytes) -> None:
    """All or nothing: a local file appears by rename; an object store shows an object only once closed."""
    final = f"{out_dir}/{name}"
    target = f"{out_dir}/.{name}.{uuid.uuid4().hex}.tmp" if out_fs.type_name == "local" else final
    with out_fs.open_output_stream(target, compression=None) as stream:
        stream.write(data)
    if target != final:
        out_fs.move(target, final)


def sweep(out_fs, out_dir: str) -> None:
    """Remove what a replica killed while writing left behind (its shard was written again on retry)."""
    from pyarrow import fs

    if out_fs.type_name == "local":
        for info in out_fs.get_file_info(fs.FileSelector(out_dir)):
            if info.base_name.startswith(".part-") and info.base_name.endswith(".tmp"):
                out_fs.delete_file(info.path)
