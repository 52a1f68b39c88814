"""--engine ray's model replica: a Ray Data map_batches actor that opens the task once (tasks.open_task, the
one load sequence, on the replica's device), runs each window of its shard through the one pipeline
(pipeline.process: checks, length-sorted batches, --keep-going error records), renders the local engine's
jsonl lines, writes the shard and returns one summary row for the driver. A replica that cannot start
sends its error (a TfxError, picklable) in that row; the driver raises it once, it is not retried."""

from __future__ import annotations

import json
import logging
import pickle
import sys

from tfx import hub, io, pipeline
from tfx.engines.ray.output import shard_bytes, shard_name, write_shard
from tfx.engines.ray.source import block_records
from tfx.errors import TfxError, first_line
from tfx.spec import RunSpec


class Replica:
    """One model replica. Each call gets one shard, runs it the way the local engine runs its windows, writes
    it and returns its summary. (Ray titles its processes after this class: MapBatches(Replica).)"""

    def __init__(self, spec: RunSpec, device: str, batch_size: int, out_fs, out_dir: str):
        self.spec, self.out_fs, self.out_dir = spec, out_fs, out_dir
        self.batch_size = batch_size  # the driver's, so that its shards hold whole windows of this replica
        self.window = batch_size * pipeline.window_batches(spec.task)
        self.seed = getattr(spec.settings, "seed", None)
        self.writer = io.Writer("jsonl", model=spec.model)
        self.warnings = capture_logging(spec)
        self.fatal: bytes | None = None
        try:
            from tfx.tasks import open_task

            hub.configure_env()
            self.task = open_task(spec, device=device)
        except Exception as exc:  # noqa: BLE001 - reported once by the driver, not retried
            self.fatal = pickle.dumps(fatal_error(exc))

    def __call__(self, batch):
        if self.fatal is not None:
            return summary(fatal=self.fatal)
        src, records = block_records(batch)
        if not records:
            return summary(warnings=self.warnings.drain())
        lines: list[str] = []
        errors: list[list] = []  # [file number, line, message]
        tokens = 0
        for start in range(0, len(records), self.window):
            window = records[start : start + self.window]
            if self.seed is not None:
                reseed(self.seed, src[start], window[0].line)
            done, stop = pipeline.process(self.task, window, self.spec.keep_going, self.batch_size)
            if stop is not None:  # no --keep-going: the driver stops the run at this record
                errors.append([src[stop.record.index], stop.record.line, stop.error])
                return summary(errors=errors, warnings=self.warnings.drain())
            for d in done:
                if d.error is not None:
                    errors.append([src[d.record.index], d.record.line, d.error])
                elif d.result is not None:
                    tokens += d.result.tokens
                lines.append(self.writer.render(d.record, d.result, d.error))
        name = shard_name(src[0], records[0].line, self.spec.output.shard_format)
        write_shard(self.out_fs, self.out_dir, name, shard_bytes(lines, self.spec.output.shard_format))
        return summary(shard=name, records=len(records), tokens=tokens, errors=errors, warnings=self.warnings.drain())


def reseed(seed: int, src: int, line: int) -> None:
    """--seed on Ray: a seed per window, from the settings' seed and the window's first record. Which replica
    runs a window, and how often, then changes nothing: a retried shard samples the very same text."""
    import random

    import numpy
    import torch

    derived = (seed * 1_000_003 + src * 7_919 + line) % 2**32
    random.seed(derived)
    numpy.random.seed(derived)
    torch.manual_seed(derived)


class WarningList(logging.Handler):
    """The replica's warnings, kept for the driver to print as the local engine would."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def drain(self) -> list[str]:
        messages, self.messages = self.messages, []
        return messages


def capture_logging(spec: RunSpec) -> WarningList:
    """tfx's warnings go to the driver in the summary rows; with -v the rest reaches it through Ray's log
    forwarding."""
    warnings = WarningList()
    logger = logging.getLogger("tfx")
    logger.handlers[:] = [warnings]
    if spec.verbose:
        logger.addHandler(logging.StreamHandler(sys.stderr))
        logger.handlers[-1].addFilter(lambda record: record.levelno < logging.WARNING)
    logger.propagate = False
    logger.setLevel(logging.ERROR if spec.quiet else logging.INFO if spec.verbose else logging.WARNING)
    return warnings


def fatal_error(exc: BaseException) -> TfxError:
    """The one-line error a replica that cannot start sends to the driver (tfx.explain's table, or a
    generic line for an exception it does not know)."""
    from tfx.explain import explain

    known = explain(exc)
    if known is not None:
        return known
    return TfxError(f"a replica could not start: {type(exc).__name__}: {first_line(exc)}", "Run with -v to see the replicas' logs.")


def summary(shard: str = "", records: int = 0, tokens: int = 0, errors=(), warnings=(), fatal: bytes | None = None):
    """The one row a replica returns per shard (read by the driver's Collector)."""
    import pyarrow as pa

    return pa.table({
        "shard": [shard], "records": pa.array([records], pa.int64()), "tokens": pa.array([tokens], pa.int64()),
        "errors": [json.dumps(list(errors))], "warnings": [json.dumps(list(warnings))],
        "fatal": pa.array([fatal or b""], pa.binary()),
    })  # fmt: skip
