"""--engine ray: the same task code on a Ray cluster, through Ray Data (issue 7).

The input is cut into shards of whole local-engine windows; a Ray Data datasource reads each shard with
tfx.io's own parser, so every record keeps a fixed id (file number, line) and the local engine's error for
a bad line. Each model replica is a `map_batches` actor that loads the model once, runs a shard through the
local engine's checks, batching (`Pump.compute`) and JSONL rendering, and writes it as one file named after
its first record. Ray Data restarts a replica that dies and retries its shard (its actor defaults are
max_restarts=-1, max_task_retries=-1); a shard file appears only once complete and a retry rewrites it with
the same records, so every input record is in the output exactly once."""

from __future__ import annotations

import fnmatch
import itertools
import json
import logging
import os
import re
import sys
import time
import uuid
import warnings
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from typing import Any

from tfx import hub, io
from tfx.errors import RecordError, TfxError, UsageError

log = logging.getLogger("tfx")

INSTALL_HINT = 'Install it with: pip install "tfx[ray]"'
OUTPUT_FORMATS = ("jsonl", "parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")
WINDOWS_PER_SHARD = 8  # a shard (one output file, one unit of retry) holds up to this many local windows
SHARDS_PER_REPLICA = 2  # ...but a small input is cut finer, so that every replica gets some
PROGRESS_EVERY_S = 10.0  # plain progress lines when stderr is not a terminal
SCAN_CHUNK = 1 << 22  # bytes read at a time when finding where each window starts
STREAM_BLOCK = 10_000  # records per block when a compressed file streams through
MAX_READERS = 4
_GLOB = re.compile(r"[*?\[]")


def run_ray(opts) -> int:
    """Run one task command on Ray; returns the exit status as the local engine does."""
    check_ray_options(opts)
    ray = import_ray(loopback=not opts.ray_address)
    from tfx import runner

    name = runner.model_name(opts)
    inputs = Inputs(opts.input_path, opts.input_format)
    out_fs, out_dir = prepare_output(opts.output)
    preflight(opts, name, remote=opts.ray_address is not None)
    with native_stderr_silenced(not opts.verbose):
        connect(ray, opts)
        try:
            replicas, pool = replica_pool(ray, opts)
            device = replica_device(opts)
            shards, shard_rows = inputs.plan(batch_size_for(opts, device) * runner.WINDOW_BATCHES, replicas)
            collector = Collector(opts, inputs, replicas)
            if not shards:
                return collector.collect(None)
            # One read task per shard, none of them split: a shard reaches one replica in one piece.
            # Reading takes no CPU from the replicas, and a few readers keep up with them.
            source = shard_source(inputs, shards)
            ds = ray.data.read_datasource(source, num_cpus=0, concurrency=min(replicas, MAX_READERS), override_num_blocks=len(shards))
            ds = ds.map_batches(
                Replica,
                batch_size=shard_rows,  # cuts a parquet row group or a compressed file into shards too
                batch_format="pyarrow",
                compute=pool,
                num_cpus=1,
                num_gpus=opts.gpus_per_replica or None,
                fn_constructor_kwargs=dict(opts=opts, name=name, device=device, out_fs=out_fs, out_dir=out_dir),
            )
            code = collector.collect(ds)
            sweep(out_fs, out_dir)
            return code
        except Exception as exc:  # noqa: BLE001 - a replica's own error, out of Ray's wrappers
            raise unwrap(ray, exc) from None
        finally:
            ray.shutdown()


def import_ray(loopback: bool = False):
    if loopback:  # Ray reads this at import: a cluster of one node then binds to 127.0.0.1 only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray  # heavy, and optional: only --engine ray needs it
        import ray.data  # noqa: F401
    except ImportError:
        raise TfxError("--engine ray needs Ray Data, which is not installed.", INSTALL_HINT) from None
    return ray


def check_ray_options(opts) -> None:
    if opts.texts or opts.input_path is None or opts.input_path == "-":
        raise UsageError("--engine ray reads its records with --input.", "Give a file, a directory, a glob or a URI (s3://bucket/docs/*.jsonl).")
    if not opts.output:
        raise UsageError("--engine ray writes its results into a directory.", "Add --output DIR (a local path or a URI such as s3://bucket/out).")
    if opts.output_format not in OUTPUT_FORMATS:
        raise UsageError(f"unknown --output-format '{opts.output_format}'.", "Use jsonl or parquet.")
    if opts.replicas is not None and opts.replicas < 1:
        raise UsageError("--replicas must be at least 1.", "Leave it out to use what the cluster has room for.")
    if opts.gpus_per_replica < 0:
        raise UsageError("--gpus-per-replica cannot be negative.", "Use 0 for CPU replicas, or e.g. 1.")
    if opts.device.startswith("cuda") and not opts.gpus_per_replica:
        raise UsageError(f"--device {opts.device} on Ray needs GPUs for each replica.", "Add --gpus-per-replica 1 (or 0.5 to share a GPU).")


def replica_device(opts) -> str:
    """A replica runs on what Ray hands it: a GPU only when it asked for one."""
    if opts.device == "auto":
        return "cuda" if opts.gpus_per_replica else "cpu"
    return opts.device


def batch_size_for(opts, device: str) -> int:
    """The local engine's batch size: --batch-size, else the task's own choice for the device. A task decides
    from the device alone, so it is asked here without a model; shards then hold whole local windows, and
    the same batches give the same numbers as the local engine."""
    if opts.batch_size:
        return opts.batch_size
    from tfx.tasks import default_batch_size

    return default_batch_size(opts.task, device)


def preflight(opts, name: str, remote: bool) -> None:
    """The local engine's checks of the model, before any cluster is touched. For a remote cluster a model
    that is not cached here is not downloaded here: the replicas fetch it on their own nodes."""
    if remote and hub.find_cached(name, opts.revision) is None and not os.path.isdir(os.path.expanduser(name)):
        return
    from tfx import loading

    resolved = hub.resolve(name, opts.revision)
    config = loading.read_json(resolved.path / "config.json")
    loading.check_task(resolved, opts.task, config)
    if opts.task in ("generate", "translate", "summarize"):
        from tfx.tasks.base import validate_generation

        validate_generation(opts.params, loading.read_json(resolved.path / "generation_config.json"))


@contextmanager
def native_stderr_silenced(enabled: bool):
    """Ray core writes its notices to file descriptor 2 from C++, where they would bury tfx's own lines:
    point fd 2 at /dev/null for the run and hand Python's sys.stderr (and the tfx logger) a copy of the real
    one. Ray's session directory keeps its full logs; -v shows everything. The raylet's warnings, which Ray
    prints on sys.stdout, go to stderr too: nothing but results ever goes to stdout."""
    if not enabled:
        with redirect_stdout(sys.stderr):
            yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    old = sys.stderr
    new = os.fdopen(real, "w", buffering=1, encoding=getattr(old, "encoding", None) or "utf-8", errors="backslashreplace")
    handlers = [h for h in logging.getLogger("tfx").handlers if isinstance(h, logging.StreamHandler) and h.stream is old]
    sys.stderr = new
    for handler in handlers:
        handler.setStream(new)
    try:
        with redirect_stdout(new):
            yield
    finally:
        new.flush()
        os.dup2(real, 2)
        sys.stderr = old
        for handler in handlers:
            handler.setStream(old)
        new.close()


def connect(ray, opts) -> None:
    """Join the cluster at --ray-address (or RAY_ADDRESS), else start a private one on loopback; never a
    neighbour's that happens to run on this machine (address="local")."""
    level = logging.INFO if opts.verbose else logging.ERROR
    quiet = dict(log_to_driver=opts.verbose, logging_level=level)
    if not opts.verbose:
        warnings.filterwarnings("ignore", module=r"ray\.")
    if opts.ray_address:
        env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT") if k in os.environ}
        try:
            ray.init(address=opts.ray_address, runtime_env={"env_vars": env} if env else None, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise TfxError(
                f"cannot reach the Ray cluster at {opts.ray_address} ({str(exc).strip().splitlines()[0]}).",
                "Start one with `ray start --head`, or check --ray-address / RAY_ADDRESS.",
            ) from None
    else:
        ray.init(address="local", include_dashboard=False, **quiet)
    logging.getLogger("ray").setLevel(level)
    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":  # Ray Data's session log file still gets everything
            handler.setLevel(level)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # tfx shows its own: records done / total
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = True  # shards come back in input order; the first bad one stops


def replica_pool(ray, opts):
    """--replicas, else as many as the cluster has CPUs (or GPUs) for now."""
    resources = ray.cluster_resources()
    if opts.gpus_per_replica:
        room = int(resources.get("GPU", 0) // opts.gpus_per_replica)
        if room == 0:
            raise TfxError(f"the Ray cluster has no room for a replica with {opts.gpus_per_replica:g} GPU(s).", "Add GPU nodes, or drop --gpus-per-replica to run on CPUs.")
    else:
        room = int(resources.get("CPU", 1))
    want = opts.replicas or max(room, 1)
    if want <= room:
        return want, ray.data.ActorPoolStrategy(size=want)
    log.warning("the Ray cluster has room for %d replica(s) now; the other %d start when it grows", room, want - room)
    return want, ray.data.ActorPoolStrategy(min_size=max(room, 1), max_size=want)


def unwrap(ray, exc: BaseException) -> BaseException:
    """Ray wraps a replica's exception (RayTaskError, UserCodeException...): give back the original."""
    if not isinstance(exc, ray.exceptions.RayError) and not type(exc).__module__.startswith("ray."):
        return exc
    seen = exc
    for _ in range(10):
        inner = getattr(seen, "cause", None) or seen.__cause__
        if inner is None or inner is seen:
            break
        seen = inner
    return exc if isinstance(seen, ray.exceptions.RayError) else seen


# ---- input: files, globs and URIs, cut into shards ----------------------------------------------------------


def filesystem(uri: str):
    """A pyarrow filesystem and the path on it: s3://, gs://, abfs://, hdfs://, file:// or a local path."""
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow says which scheme or credential is missing
        raise TfxError(f"cannot open {uri}: {str(exc).strip().splitlines()[0]}", "Check the URI and the storage credentials.") from None


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

    def where(self, src: int, line: int) -> str:
        kind = "row" if is_parquet(self.paths[src]) else "line"
        scheme = self.spec[: self.spec.index("://") + 3] if "://" in self.spec else ""
        return f"{kind} {line}" if len(self.paths) == 1 else f"{scheme}{self.paths[src]}: {kind} {line}"


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


def shard_source(inputs: Inputs, shards: list[Shard]):
    """A Ray Data datasource with one read task per shard, each parsing its records with tfx.io: rows of
    (src, line, text, extra, error). One task gives one block, so a shard reaches one replica whole."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    fs, paths, input_format = inputs.fs, inputs.paths, inputs.input_format

    class Shards(Datasource):
        def get_name(self) -> str:
            return "TfxRecords"

        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(lambda s=s: read_shard(fs, paths[s.src], s, input_format), metadata(s)) for s in shards]

    def metadata(s: Shard):
        return BlockMetadata(num_rows=s.rows, size_bytes=None, exec_stats=None, input_files=(paths[s.src],))

    return Shards()


def read_shard(fs, path: str, shard: Shard, input_format: str):
    from io import BufferedReader, BytesIO

    if is_parquet(path):
        yield records_block(shard.src, shard.first, parquet_records(fs, path, shard.start))
        return
    if shard.rows is None:  # compressed: no seeking, the whole file streams through one task
        with fs.open_input_stream(path, compression=compression(path)) as handle:
            records = io.read_records([], None, input_format, stdin=BufferedReader(handle))
            while chunk := list(itertools.islice(records, STREAM_BLOCK)):
                yield records_block(shard.src, 1, chunk)
        return
    with fs.open_input_file(path) as handle:
        handle.seek(shard.start)
        data = handle.read() if shard.stop is None else handle.read(shard.stop - shard.start)
    yield records_block(shard.src, shard.first, io.read_records([], None, input_format, stdin=BytesIO(data)))


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
    import pyarrow as pa

    records = list(records)
    extra = [json.dumps(r.extra, ensure_ascii=False, default=str) if r.extra else "" for r in records]
    return pa.table({
        "src": pa.array([src] * len(records), pa.int64()),
        "line": pa.array([first + r.line - 1 for r in records], pa.int64()),
        "text": pa.array([r.text for r in records], pa.string()),
        "extra": pa.array(extra, pa.string()),
        "error": pa.array([r.error for r in records], pa.string()),
    })  # fmt: skip


# ---- output ------------------------------------------------------------------------------------------------


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


def shard_bytes(lines: list[str], output_format: str) -> bytes:
    """jsonl: the local engine's lines as they are. parquet: the same records as columns."""
    if output_format == "jsonl":
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


# ---- the replica -----------------------------------------------------------------------------------------


class Replica:
    """One model replica, a Ray Data map_batches actor. Each call gets one shard, runs it the way the local
    engine runs its windows, writes it and returns one summary row for the driver."""

    def __init__(self, opts, name: str, device: str, out_fs, out_dir: str):
        self.opts, self.out_fs, self.out_dir = opts, out_fs, out_dir
        self.warnings = WarningList()  # the driver prints them, as the local engine would
        logger = logging.getLogger("tfx")
        logger.handlers[:] = [self.warnings]
        if opts.verbose:  # -v: the rest reaches the driver through Ray's log forwarding
            logger.addHandler(logging.StreamHandler(sys.stderr))
            logger.handlers[-1].addFilter(lambda record: record.levelno < logging.WARNING)
        logger.propagate = False
        logger.setLevel(logging.ERROR if opts.quiet else logging.INFO if opts.verbose else logging.WARNING)
        self.fatal = None
        try:
            self.load(name, device)
        except Exception as exc:  # noqa: BLE001 - reported once by the driver, not retried
            self.fatal = describe(exc)

    def load(self, name: str, device: str) -> None:
        from tfx import devices, loading, runner
        from tfx.tasks import make_task

        hub.configure_env()
        resolved = hub.resolve(name, self.opts.revision)
        device = devices.pick_device(device)
        dtype = devices.pick_dtype(self.opts.dtype, device)
        loaded = loading.load(resolved, self.opts.task, device, dtype, self.opts.trust_remote_code, self.opts.verbose)
        self.task = make_task(self.opts.task, loaded, dict(self.opts.params))
        self.writer = io.Writer("jsonl", None, model=name)
        # The local engine's batching (by length inside a window, the task's batch size); no progress bar
        # here: no input file to count, no terminal.
        self.pump = runner.Pump(self.task, self.writer, replace(self.opts, input_path=None, quiet=True), None, False)
        self.window = self.pump.batch_size * runner.WINDOW_BATCHES

    def __call__(self, batch):
        if self.fatal is not None:
            return summary(fatal=self.fatal)
        src, lines = batch.column("src").to_pylist(), batch.column("line").to_pylist()
        columns = zip(lines, *(batch.column(c).to_pylist() for c in ("text", "extra", "error")))
        records = [io.Record(i, line, text, json.loads(extra) if extra else {}, error) for i, (line, text, extra, error) in enumerate(columns)]
        out: list[str] = []
        errors: list[list] = []
        tokens = 0
        for start in range(0, len(records), self.window):
            window = records[start : start + self.window]
            if self.opts.params.get("seed") is not None:
                reseed(self.opts.params["seed"], src[start], lines[start])
            bad = self.check(window)
            errors += [[src[i], lines[i], message] for i, message in sorted(bad.items())]
            if bad and not self.opts.keep_going:
                return summary(errors=errors, warnings=self.warnings.drain())  # the driver stops the run
            results = self.pump.compute([r for r in window if r.index not in bad and r.text.strip()])
            tokens += sum(r.get("generated_tokens", 0) for r in results.values())
            for r in window:
                error = bad.get(r.index)
                out.append(self.writer.render(r, None, error=error) if error is not None else self.writer.render(r, results.get(r.index, {"output": ""})))
        name = f"part-{src[0]:06d}-{lines[0]:012d}.{self.opts.output_format}"
        write_shard(self.out_fs, self.out_dir, name, shard_bytes(out, self.opts.output_format))
        return summary(shard=name, records=len(records), tokens=tokens, errors=errors, warnings=self.warnings.drain())

    def check(self, window: list[io.Record]) -> dict[int, str]:
        """The local engine's per-record checks: the reader's error, or the task refusing the text."""
        bad = {}
        for r in window:
            error = r.error
            if error is None and r.text.strip():
                try:
                    self.task.check(r.text)
                except RecordError as exc:
                    error = str(exc)
            if error is not None:
                bad[r.index] = error
        return bad


def reseed(seed: int, src: int, line: int) -> None:
    """--seed on Ray: a seed per window, from --seed and the window's first record. Which replica runs a
    window, and how often, then changes nothing: a retried shard samples the very same text."""
    import random

    import numpy
    import torch

    derived = (seed * 1_000_003 + src * 7_919 + line) % 2**32
    random.seed(derived)
    numpy.random.seed(derived)
    torch.manual_seed(derived)


class WarningList(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def drain(self) -> list[str]:
        messages, self.messages = self.messages, []
        return messages


def describe(exc: BaseException) -> list:
    from tfx.errors import explain

    known = explain(exc)
    if known is not None:
        return [known.message, known.hint, known.exit_code]
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return [f"a replica could not start: {type(exc).__name__}: {first}", "Run with -v to see the replicas' logs.", 1]


def summary(shard="", records=0, tokens=0, errors=(), warnings=(), fatal=None):
    import pyarrow as pa

    return pa.table({
        "shard": [shard], "records": pa.array([records], pa.int64()), "tokens": pa.array([tokens], pa.int64()),
        "errors": [json.dumps(list(errors))], "warnings": [json.dumps(list(warnings))],
        "fatal": [json.dumps(fatal) if fatal else ""],
    })  # fmt: skip


# ---- the driver: progress, errors and the exactly-once count -----------------------------------------------


class Collector:
    def __init__(self, opts, inputs: Inputs, replicas: int):
        from tfx.runner import Progress

        self.opts, self.inputs, self.replicas = opts, inputs, replicas
        self.bar = Progress(opts, inputs.total)  # the local engine's bar, on a terminal
        self.shards: set[str] = set()
        self.done = self.failed = 0
        self.started = self.last_line = time.monotonic()

    def collect(self, ds) -> int:
        self.bar.start_if(True)
        try:
            batches = ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0) if ds is not None else ()
            for batch in batches:
                for row in batch.to_pylist():
                    self.take(row)
        finally:
            self.bar.stop()
        total = self.inputs.total
        if total is not None and self.done != total:
            raise TfxError(f"only {self.done} of {total} records came back from the cluster.", "Run again into an empty --output directory.")
        self.line(final=True)
        return 1 if self.failed else 0

    def take(self, row: dict[str, Any]) -> None:
        if row["fatal"]:
            message, hint, code = json.loads(row["fatal"])
            raise TfxError(message, hint, code)
        for message in json.loads(row["warnings"]):
            log.warning("%s", message)
        errors = json.loads(row["errors"])
        if errors and not self.opts.keep_going:
            src, line, error = errors[0]
            raise TfxError(f"{self.inputs.where(src, line)}: {error}.", "Fix that record, or pass --keep-going to write an error record and go on.")
        if row["shard"] in self.shards:
            return  # a retried shard reported twice: its file was only rewritten
        self.shards.add(row["shard"])
        for src, line, error in errors:
            print(f"tfx: {self.inputs.where(src, line)}: {error}", file=sys.stderr)
        self.failed += len(errors)
        self.done += row["records"]
        self.bar.advance(row["records"], row["tokens"])
        if time.monotonic() - self.last_line >= PROGRESS_EVERY_S:
            self.line()

    def line(self, final: bool = False) -> None:
        """records done / total on stderr for a log; a terminal has the bar."""
        if self.opts.quiet or (self.bar.enabled and not final):
            return
        self.last_line = time.monotonic()
        total = "?" if self.inputs.total is None else str(self.inputs.total)
        where = f" -> {self.opts.output}" if final else ""
        print(f"tfx: {self.done}/{total} records, {self.replicas} replica(s), {time.monotonic() - self.started:.1f}s{where}", file=sys.stderr)
