"""--engine ray's reading: a Ray Data datasource with one read task per shard, each parsing its records with
tfx.io's own reader (so a bad line gets the local engine's error), and the Arrow block those records travel
in to a replica: rows of (src, line, text, pair, extra, error), and back into io.Records there. `fields` are
the task's JSONL fields (qa reads "question" and "context"), as a local run reads them."""

from __future__ import annotations

import itertools
import json

from tfx import io
from tfx.engines.ray.inputs import Inputs, Shard, compression, is_parquet

STREAM_BLOCK = 10_000  # records per block when a compressed file streams through


def shard_source(inputs: Inputs, shards: list[Shard], fields: io.Fields = io.TEXT_FIELDS):
    """The datasource. One task gives one block, so a shard reaches one replica whole."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    fs, paths, input_format = inputs.fs, inputs.paths, inputs.input_format

    class Shards(Datasource):
        def get_name(self) -> str:
            return "TfxRecords"

        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(lambda s=s: read_shard(fs, paths[s.src], s, input_format, fields), metadata(s)) for s in shards]

    def metadata(s: Shard):
        return BlockMetadata(num_rows=s.rows, size_bytes=None, exec_stats=None, input_files=(paths[s.src],))

    return Shards()


def read_shard(fs, path: str, shard: Shard, input_format: str, fields: io.Fields = io.TEXT_FIELDS):
    from io import BufferedReader, BytesIO

    if is_parquet(path):
        yield records_block(shard.src, shard.first, parquet_records(fs, path, shard.start))
        return
    if shard.rows is None:  # compressed: no seeking, the whole file streams through one task
        with fs.open_input_stream(path, compression=compression(path)) as handle:
            records = io.read_records([], None, input_format, stdin=BufferedReader(handle), fields=fields)
            while chunk := list(itertools.islice(records, STREAM_BLOCK)):
                yield records_block(shard.src, 1, chunk)
        return
    with fs.open_input_file(path) as handle:
        handle.seek(shard.start)
        data = handle.read() if shard.stop is None else handle.read(shard.stop - shard.start)
    yield records_block(shard.src, shard.first, io.read_records([], None, input_format, stdin=BytesIO(data), fields=fields))


def parquet_records(fs, path: str, group: int):
    """A parquet row is a record: its "text" column is the input and the other columns pass through."""
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as handle:
        rows = pq.ParquetFile(handle).read_row_group(group).to_pylist()
    for n, row in enumerate(rows):
        text = row.pop("text", None)
        error = None if isinstance(text, str) else 'no "text" column (a string) in the row'
        yield io.Record(n, n + 1, text if isinstance(text, str) else "", extra=row, error=error)


def records_block(src: int, first: int, records):
    """Records of file `src`, numbered from line `first`, as one Arrow block."""
    import pyarrow as pa

    records = list(records)
    extra = [json.dumps(r.extra, ensure_ascii=False, default=str) if r.extra else "" for r in records]
    return pa.table({
        "src": pa.array([src] * len(records), pa.int64()),
        "line": pa.array([first + r.line - 1 for r in records], pa.int64()),
        "text": pa.array([r.text for r in records], pa.string()),
        "pair": pa.array([r.pair for r in records], pa.string()),
        "extra": pa.array(extra, pa.string()),
        "error": pa.array([r.error for r in records], pa.string()),
    })  # fmt: skip


def block_records(batch) -> tuple[list[int], list[io.Record]]:
    """A replica's batch back into (file numbers, records), each record indexed by its place in the batch."""
    src, lines = batch.column("src").to_pylist(), batch.column("line").to_pylist()
    columns = zip(lines, *(batch.column(c).to_pylist() for c in ("text", "pair", "extra", "error")))
    records = [io.Record(i, line, text, json.loads(extra) if extra else {}, error, pair=pair) for i, (line, text, pair, extra, error) in enumerate(columns)]
    return src, records
