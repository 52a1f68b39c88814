"""--engine ray's cluster: importing Ray (optional, so a one-line install hint without it), joining the
cluster at --ray-address or starting a private one on loopback, keeping Ray's own notices off tfx's
stderr, sizing the pool of replicas, and taking a replica's exception out of Ray's wrappers."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager, redirect_stdout

from tfx.errors import TfxError, first_line
from tfx.spec import RunSpec

log = logging.getLogger("tfx")

# The one place the distribution's name is written (it is being renamed).
INSTALL_HINT = 'Install it with: pip install "tfx-cli[ray]"'
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")  # to a remote cluster's replicas


def import_ray(loopback: bool = False):
    if loopback:  # Ray reads this at import: a cluster of one node then binds to 127.0.0.1 only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray  # heavy, and optional: only --engine ray needs it
        import ray.data  # noqa: F401
    except ImportError:
        raise TfxError("--engine ray needs Ray Data, which is not installed.", INSTALL_HINT) from None
    return ray


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


def connect(ray, spec: RunSpec) -> None:
    """Join the cluster at --ray-address (or RAY_ADDRESS), else start a private one on loopback; never a
    neighbour's that happens to run on this machine (address="local")."""
    level = logging.INFO if spec.verbose else logging.ERROR
    quiet = dict(log_to_driver=spec.verbose, logging_level=level)
    if not spec.verbose:
        warnings.filterwarnings("ignore", module=r"ray\.")
    address = spec.engine.ray_address
    if address:
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        try:
            ray.init(address=address, runtime_env={"env_vars": env} if env else None, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise TfxError(
                f"cannot reach the Ray cluster at {address} ({first_line(exc)}).",
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


def replica_pool(ray, spec: RunSpec):
    """(replicas, compute strategy): --replicas, else as many as the cluster has CPUs (or GPUs) for now."""
    resources = ray.cluster_resources()
    gpus = spec.engine.gpus_per_replica
    if gpus:
        room = int(resources.get("GPU", 0) // gpus)
        if room == 0:
            raise TfxError(f"the Ray cluster has no room for a replica with {gpus:g} GPU(s).", "Add GPU nodes, or drop --gpus-per-replica to run on CPUs.")
    else:
        room = int(resources.get("CPU", 1))
    want = spec.engine.replicas or max(room, 1)
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
