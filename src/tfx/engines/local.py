"""The local engine: load the model in this process and run the records through the pipeline."""

from __future__ import annotations

from tfx import pipeline
from tfx.spec import RunSpec
from tfx.tasks import open_task


def run(spec: RunSpec) -> int:
    return pipeline.run_spec(spec, open_task(spec))
