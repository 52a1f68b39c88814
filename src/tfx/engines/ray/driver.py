"""--engine ray's driver: checks the spec and the model before any cluster is touched, plans the shards,
builds the Ray Data pipeline (one read task per shard -> the replicas' actor pool) and collects the
replicas' summary rows: progress, the records' errors, a replica's fatal error, and the exactly-once count."""

from __future__ import annotations

import json
import logging
import os
import pickle
import sys
import time
from typing import Any

from tfx import hub, io, pipeline
from tfx.engines.ray.cluster import connect, import_ray, native_stderr_silenced, replica_pool, unwrap
from tfx.engines.ray.inputs import Inputs
from tfx.engines.ray.output import prepare_output, sweep
from tfx.errors import TfxError, UsageError
from tfx.progress import Progress
from tfx.spec import OUTPUT_FORMATS, RunSpec

log = logging.getLogger("tfx")

PROGRESS_EVERY_S = 10.0  # plain progress lines when stderr is not a terminal
MAX_READERS = 4


def run(spec: RunSpec) -> int:
    """Run one task command on Ray; returns the exit status as the local engine does."""
    check(spec)
    ray = import_ray(loopback=not spec.engine.ray_address)
    inputs = Inputs(spec.inputs.path, spec.inputs.format)
    out_fs, out_dir = prepare_output(spec.output.path)
    preflight(spec, remote=bool(spec.engine.ray_address))
    with native_stderr_silenced(not spec.verbose):
        connect(ray, spec)
        try:
            replicas, pool = replica_pool(ray, spec)
            device = replica_device(spec)
            batch_size = batch_size_for(spec, device)
            shards, shard_rows = inputs.plan(batch_size * pipeline.window_batches(spec.task), replicas)
            collector = Collector(spec, inputs, replicas)
            if not shards:
                return collector.collect(None)
            from tfx.engines.ray.replica import Replica
            from tfx.engines.ray.source import shard_source

            # One read task per shard, none of them split: a shard reaches one replica in one piece.
            # Reading takes no CPU from the replicas, and a few readers keep up with them.
            source = shard_source(inputs, shards, pipeline.input_fields(spec.task))
            ds = ray.data.read_datasource(source, num_cpus=0, concurrency=min(replicas, MAX_READERS), override_num_blocks=len(shards))
            ds = ds.map_batches(
                Replica,
                batch_size=shard_rows,  # cuts a parquet row group or a compressed file into shards too
                batch_format="pyarrow",
                compute=pool,
                num_cpus=1,
                num_gpus=spec.engine.gpus_per_replica or None,
                fn_constructor_kwargs=dict(spec=spec, device=device, batch_size=batch_size, out_fs=out_fs, out_dir=out_dir),
            )
            code = collector.collect(ds)
            sweep(out_fs, out_dir)
            return code
        except Exception as exc:  # noqa: BLE001 - a replica's own error, out of Ray's wrappers
            raise unwrap(ray, exc) from None
        finally:
            ray.shutdown()


def check(spec: RunSpec) -> None:
    """What --engine ray needs beyond the spec's own checks, before Ray is even imported."""
    engine, path = spec.engine, spec.inputs.path
    if spec.inputs.texts or path is None or path == "-":
        raise UsageError("--engine ray reads its records with --input.", "Give a file, a directory, a glob or a URI (s3://bucket/docs/*.jsonl).")
    if not spec.output.path:
        raise UsageError("--engine ray writes its results into a directory.", "Add --output DIR (a local path or a URI such as s3://bucket/out).")
    if spec.output.shard_format not in OUTPUT_FORMATS:
        raise UsageError(f"unknown --output-format '{spec.output.shard_format}'.", "Use jsonl or parquet.")
    if engine.replicas is not None and engine.replicas < 1:
        raise UsageError("--replicas must be at least 1.", "Leave it out to use what the cluster has room for.")
    if engine.gpus_per_replica < 0:
        raise UsageError("--gpus-per-replica cannot be negative.", "Use 0 for CPU replicas, or e.g. 1.")
    if spec.device.startswith("cuda") and not engine.gpus_per_replica:
        raise UsageError(f"--device {spec.device} on Ray needs GPUs for each replica.", "Add --gpus-per-replica 1 (or 0.5 to share a GPU).")


def replica_device(spec: RunSpec) -> str:
    """A replica runs on what Ray hands it: a GPU only when it asked for one."""
    if spec.device == "auto":
        return "cuda" if spec.engine.gpus_per_replica else "cpu"
    return spec.device


def batch_size_for(spec: RunSpec, device: str) -> int:
    """The local engine's batch size: --batch-size, else the task's own choice for the device. A task decides
    from the device alone, so it is asked here without a model; shards then hold whole local windows, and
    the same batches give the same numbers as the local engine."""
    if spec.batch_size:
        return spec.batch_size
    from tfx.tasks import default_batch_size

    return default_batch_size(spec.task, device)


def preflight(spec: RunSpec, remote: bool) -> None:
    """loading.prepare's checks of the model and the settings, before any cluster is touched. For a remote
    cluster a model that is not cached here is not downloaded here: the replicas fetch it on their nodes."""
    if remote and hub.find_cached(spec.model, spec.revision) is None and not os.path.isdir(os.path.expanduser(spec.model)):
        return
    from tfx import loading

    loading.prepare(spec.model, spec.task, spec.settings, spec.revision)


class Collector:
    """The replicas' summary rows, in input order: progress, errors, and the count that proves every record
    came back exactly once."""

    def __init__(self, spec: RunSpec, inputs: Inputs, replicas: int):
        self.spec, self.inputs, self.replicas = spec, inputs, replicas
        self.bar = Progress(spec.quiet, inputs.total)  # the local engine's bar, on a terminal
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
            raise pickle.loads(row["fatal"])  # a replica could not start: its TfxError, hint and exit code
        for message in json.loads(row["warnings"]):
            log.warning("%s", message)
        errors = json.loads(row["errors"])
        if errors and not self.spec.keep_going:
            src, line, error = errors[0]
            raise pipeline.stop_error(pipeline.Done(self.record(src, line), error=error))
        if row["shard"] in self.shards:
            return  # a retried shard reported twice: its file was only rewritten
        self.shards.add(row["shard"])
        for src, line, error in errors:
            print(f"tfx: {self.record(src, line).where}: {error}", file=sys.stderr)  # as io.Writer does
        self.failed += len(errors)
        self.done += row["records"]
        self.bar.advance(row["records"], row["tokens"])
        if time.monotonic() - self.last_line >= PROGRESS_EVERY_S:
            self.line()

    def record(self, src: int, line: int) -> io.Record:
        """A stand-in for the record at (file, line): what the local engine's messages name."""
        return io.Record(0, line, "", kind=self.inputs.kind(src))

    def line(self, final: bool = False) -> None:
        """records done / total on stderr for a log; a terminal has the bar."""
        if self.spec.quiet or (self.bar.enabled and not final):
            return
        self.last_line = time.monotonic()
        total = "?" if self.inputs.total is None else str(self.inputs.total)
        where = f" -> {self.spec.output.path}" if final else ""
        print(f"tfx: {self.done}/{total} records, {self.replicas} replica(s), {time.monotonic() - self.started:.1f}s{where}", file=sys.stderr)
