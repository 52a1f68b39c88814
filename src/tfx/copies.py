"""Converted copies of cached models, one store for every backend that converts (ct2, onnx), beside the hub
cache and never inside its snapshots: $HF_HOME/<backend root>/<owner>--<name>--<commit>--<rest of the key>/.

A copy is converted into a temporary folder under a lock on its name and renamed into place when complete
(its meta file written last), so a crash or a second process never leaves a half model where a run would
find it; leftovers of a crash are removed by the next conversion of that name, under the same lock.
`tfx cache ls` / `rm` list and delete them through `converted` and `remove`. Imports nothing heavy.

It also holds what the converting backends' packages share (tfx.ct2 and tfx.onnx are siblings in one layer
and may not import each other): the Unsupported error each subclasses, `require` (the optional library or a
one-line install hint), `installed_version`, `request_device` and `threads`."""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfx.errors import TfxError, UsageError

log = logging.getLogger("tfx")
_COMMIT_DIR = "snapshots"
# backend -> (folder under $HF_HOME, meta file, the file a complete copy holds besides its meta)
KINDS = {
    "ct2": ("ctranslate2", "tfx-ct2.json", "model.bin"),
    "onnx": ("onnx", "tfx-onnx.json", "model.onnx"),
}


@dataclass(frozen=True)
class Converted:
    path: Path
    repo_id: str
    commit: str
    version: str  # the converting library's version (ctranslate2; onnxruntime for onnx)
    quantization: str
    size: int
    backend: str = "ct2"
    head: str = ""  # onnx: the task head exported (classify, ner, embed, ...)


def root(backend: str = "ct2") -> Path:
    from huggingface_hub import constants  # cheap: reads the environment only

    return Path(constants.HF_HOME) / KINDS[backend][0]


def source_key(repo_id: str, snapshot: Path) -> tuple[str, str]:
    """(repo part, commit) naming a source: the hub commit of a cached snapshot; for a local directory, its
    path and a fingerprint of its files (a changed model is converted again)."""
    if snapshot.parent.name == _COMMIT_DIR and repo_id != str(snapshot):
        return repo_id.replace("/", "--"), snapshot.name
    digest = hashlib.sha256(str(snapshot.resolve()).encode())
    for child in sorted(snapshot.iterdir()):
        try:
            info = child.stat()
        except OSError:
            continue
        digest.update(f"{child.name}:{info.st_size}:{info.st_mtime_ns}".encode())
    return "local--" + hashlib.sha256(str(snapshot.resolve()).encode()).hexdigest()[:12], digest.hexdigest()[:12]


def folder(backend: str, repo_id: str, snapshot: Path, *key: str) -> Path:
    repo, commit = source_key(repo_id, snapshot)
    return root(backend) / "--".join((repo, commit, *key))


def complete(path: Path, backend: str = "ct2") -> bool:
    _, meta, payload = KINDS[backend]
    return (path / meta).is_file() and (path / payload).is_file()


def note(message: str) -> None:
    """A line on stderr for the person at the terminal; --quiet (tfx's logger at ERROR) silences it."""
    if log.getEffectiveLevel() < logging.ERROR:
        print(f"tfx: {message}", file=sys.stderr, flush=True)


def ensure(path: Path, meta: dict, convert: Callable[[Path], None], backend: str = "ct2", what: str = "CTranslate2") -> Path:
    """The converted copy at `path`, converting it with convert(tmp_dir) first if it is not complete."""
    if complete(path, backend):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if complete(path, backend):  # converted by another process while this one waited
                return path
            for stale in path.parent.glob(f".tmp-{path.name}-*"):
                shutil.rmtree(stale, ignore_errors=True)  # a crashed conversion's leftovers (the lock is ours)
            if path.exists():
                shutil.rmtree(path)  # incomplete: not made by this code, or damaged
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
            try:
                started = time.monotonic()
                note(f"converting {meta['repo_id']} to {what} ({meta['quantization']}), once, into {path}")
                convert(tmp)
                (tmp / KINDS[backend][1]).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
                os.chmod(tmp, 0o755)
                os.rename(tmp, path)
                note(f"converted {meta['repo_id']} in {time.monotonic() - started:.1f} s")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def read_meta(path: Path, backend: str) -> dict:
    return json.loads((path / KINDS[backend][1]).read_text(encoding="utf-8"))


def converted(repo_ids: set[str] | None = None, backends: tuple[str, ...] = tuple(KINDS), base: Path | None = None) -> list[Converted]:
    """The complete converted copies of every backend (of these repositories, case-insensitive, when given;
    base: the one backend's folder, where it is not root(backend))."""
    wanted = {r.lower() for r in repo_ids} if repo_ids is not None else None
    found = []
    for backend in backends:
        try:
            entries = sorted((base or root(backend)).iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink() or not complete(entry, backend):
                continue
            try:
                meta = read_meta(entry, backend)
            except (OSError, ValueError):
                continue
            repo_id = str(meta.get("repo_id", ""))
            if wanted is not None and repo_id.lower() not in wanted:
                continue
            size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file() and not f.is_symlink())
            found.append(Converted(entry, repo_id, str(meta.get("commit", "")), str(meta.get("version", "")), str(meta.get("quantization", "")), size, backend, str(meta.get("head", ""))))
    return found


def remove(copies: list[Converted]) -> int:
    """Delete these copies (real folders directly inside their backend's root only); the bytes freed."""
    freed = 0
    for copy in copies:
        base = root(copy.backend).resolve()
        if copy.path.is_symlink() or copy.path.resolve().parent != base:
            continue
        freed += copy.size
        shutil.rmtree(copy.path)
    return freed


# ---- what every converting backend package shares ------------------------------------------------------------

FALLBACK_HINT = "Use --backend auto to fall back to transformers, or --backend transformers."


class Unsupported(TfxError):
    """A model or a setting a converting backend cannot run with transformers' result (--backend auto falls
    back). Each backend raises its own subclass (ct2.Unsupported, onnx.Unsupported), so a caller catches one."""

    def __init__(self, message: str, hint: str | None = FALLBACK_HINT):
        super().__init__(message if message.endswith(".") else message + ".", hint)


def require(module: str, backend: str, hint: str, error: type[Unsupported]) -> Any:
    """The backend's optional library, or `error` in one line naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise error(f"--backend {backend} needs the {module} package, which is not installed.", hint) from None


def installed_version(distribution: str, backend: str, hint: str, error: type[Unsupported]) -> str:
    """The installed version of the backend's library (recorded in each copy's meta)."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        raise error(f"--backend {backend} needs the {distribution} package, which is not installed.", hint) from None


def request_device(requested: str, backend: str, error: type[Unsupported], cuda_devices: Callable[[], int] | None = None) -> tuple[str, int]:
    """(cpu | cuda, index) from --device, without torch. auto is CUDA where the backend sees a GPU;
    cuda_devices None: a backend that runs on the CPU only."""
    requested = (requested or "auto").strip().lower()
    if requested == "cpu" or (requested == "auto" and cuda_devices is None):
        return "cpu", 0
    if cuda_devices is None or requested == "mps":
        where = "the CPU here" if cuda_devices is None else "the CPU and CUDA GPUs"
        raise error(f"the {backend} backend runs on {where}, not {requested}.", "Use --device cpu, or --backend transformers.")
    if requested != "auto" and not requested.startswith("cuda"):
        raise UsageError(f"unknown device '{requested}'.", "Use auto, cpu, cuda or cuda:N.")
    count = cuda_devices()
    if requested == "auto":
        return ("cuda", 0) if count else ("cpu", 0)
    index = int(requested.split(":")[1]) if ":" in requested else 0
    if index < count:
        return "cuda", index
    raise TfxError(f"device {requested} is not available to the {backend} backend here ({count} CUDA devices).", "Use --device cpu or auto.")


def threads() -> int:
    """The cores this process was given (its CPU affinity), for the backend's intra-op threads."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)
