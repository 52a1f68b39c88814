"""--engine ray: the same task code on a Ray cluster, through Ray Data.

The input is cut into shards of whole local-engine windows (inputs.py); a Ray Data datasource reads each
shard with tfx.io's own parser (source.py), so every record keeps a fixed id (file number, line) and the
local engine's error for a bad line. Each model replica (replica.py) is a `map_batches` actor that opens
the task once (tasks.open_task), runs its shard's windows through the one pipeline (pipeline.process) and
writes the local engine's jsonl lines as one shard named after its first record (output.py). The driver
(driver.py) checks the run and the model first (loading.prepare), joins or starts the cluster (cluster.py)
and collects the replicas' summaries. Ray Data restarts a replica that dies and retries its shard (its actor
defaults are max_restarts=-1, max_task_retries=-1); a shard file appears only once complete and a retry
rewrites it with the same records, so every input record is in the output exactly once.

Importing this package imports no Ray: `run` does, and says how to install it when it is missing."""

from __future__ import annotations

from tfx.engines.ray.cluster import INSTALL_HINT
from tfx.engines.ray.driver import run

__all__ = ["INSTALL_HINT", "run"]
