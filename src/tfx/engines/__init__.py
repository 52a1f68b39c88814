"""Engines: each turns a RunSpec into a run of its records and returns the exit status.

- local: the model in this process (tfx.engines.local)
- remote: a running `tfx serve` does the model's part (--server; tfx.engines.remote)
- ray: a Ray cluster through Ray Data (--engine ray; tfx.engines.ray)

The CLI picks the engine; no engine imports another engine or the CLI. A new engine is one module with a
`run(spec) -> int` plus a line here."""

from __future__ import annotations

import importlib

from tfx.spec import RunSpec

ENGINES = {
    "local": "tfx.engines.local",
    "remote": "tfx.engines.remote",
    "ray": "tfx.engines.ray",
}


def run(spec: RunSpec) -> int:
    return importlib.import_module(ENGINES[spec.engine.name]).run(spec)
