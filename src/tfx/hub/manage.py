"""The cache as a whole, for `tfx cache ls / rm`, `tfx models` and `tfx env`: huggingface_hub's
scan_cache_dir to list it, and tfx's own removal of exactly one repository's folder.

Why not the library's HFCacheInfo.delete_revisions for `tfx cache rm`: measured in huggingface_hub 2.4.0
(pinned by tests/test_hub_cache.py), it takes commit hashes and deletes each in the first repository it
meets that holds it, so with alice/orig and alice/copy sharing a commit, deleting alice/copy's commits
deleted alice/orig. tfx deletes the folder of the named repository (models--alice--copy), only when it
is a real folder directly inside the cache, and never follows a symbolic link out of it."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from tfx import errors, registry
from tfx.hub.cache import REF_LIMIT, repo_dir
from tfx.hub.settings import cache_dir


@dataclass
class CachedModel:
    repo_id: str
    name: str  # the registry name when tfx knows the model, else the repo id
    size: int
    commits: list[str]
    refs: list[str]
    last_used: float
    path: Path


def scan_cache():
    """huggingface_hub's HFCacheInfo for the cache, or None when the cache does not exist yet."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    root = cache_dir()
    _check_refs(root)
    try:
        return scan_cache_dir(root)
    except (CacheNotFound, ValueError):
        return None


def _check_refs(root: Path) -> None:
    """scan_cache_dir (2.4.0) opens and reads every file under each repository's refs/ whole: a FIFO there
    would hang `tfx cache ls`, `tfx models` and `tfx env`, a link to /dev/zero would fill memory. The same
    files are looked at first, without opening them; one that is not a small regular file stops the scan."""
    try:
        repos = [p for p in root.iterdir() if p.name.startswith("models--")]
    except OSError:
        return
    for repo in repos:
        for path in (repo / "refs").glob("**/*"):
            try:
                info = path.stat()
            except OSError:
                continue  # a broken link: the scan reports it as corrupted, it cannot hang on it
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_size > REF_LIMIT:
                raise errors.TfxError(
                    f"the cache holds a ref that is not a small file: {path}.",
                    "Remove it (a ref holds a commit hash); the model's snapshots are untouched.",
                )


def cached_models(scan=None) -> list[CachedModel]:
    scan = scan if scan is not None else scan_cache()
    if scan is None:
        return []
    models = []
    for repo in scan.repos:
        if repo.repo_type != "model":
            continue
        info = registry.lookup(repo.repo_id)
        models.append(
            CachedModel(
                repo_id=repo.repo_id,
                name=info.name if info else repo.repo_id,
                size=repo.size_on_disk,
                commits=sorted(r.commit_hash for r in repo.revisions),
                refs=sorted(ref for r in repo.revisions for ref in r.refs),
                last_used=max(repo.last_accessed, repo.last_modified),
                path=repo.repo_path,
            )
        )
    return sorted(models, key=lambda m: (m.name.lower(), m.repo_id))


def matching_cached(name: str, models: list[CachedModel]) -> list[CachedModel]:
    """Cached repos a name stands for: a registry name covers its canonical and older ids."""
    info = registry.lookup(name)
    wanted = {i.lower() for i in (info.cache_ids if info else (name,))}
    return [m for m in models if m.repo_id.lower() in wanted]


def repo_folder(model: CachedModel) -> Path:
    """The folder `tfx cache rm` may delete for model: <cache>/models--owner--name, a real directory
    whose resolved path sits directly in the resolved cache. TfxError for anything else."""
    folder = repo_dir(model.repo_id)
    root = cache_dir().resolve()
    if folder.is_symlink() or not folder.is_dir() or folder.resolve().parent != root:
        raise errors.TfxError(
            f"{model.repo_id}'s cache entry {folder} is not a folder inside the cache ({root}); nothing deleted.",
            "Remove it by hand if it is yours: tfx deletes only real folders inside the cache.",
        )
    return folder


def delete_cached(models: list[CachedModel]) -> int:
    """Delete each model's repository folder (checked by repo_folder first, all of them before any is
    deleted); the bytes freed. Links inside (snapshot -> blob) are removed, never followed."""
    folders = [repo_folder(m) for m in models]
    freed = 0
    for folder in folders:
        freed += disk_usage(folder)
        shutil.rmtree(folder)
    return freed


def disk_usage(folder: Path) -> int:
    """Bytes that deleting folder frees: its regular files (links not followed), each counted once, and
    only when every hard link to it is inside folder (a blob shared with another store stays)."""
    seen: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [size, links, links seen here]
    for top, _dirs, names in os.walk(folder):
        for name in names:
            try:
                info = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                entry = seen.setdefault((info.st_dev, info.st_ino), [info.st_size, info.st_nlink, 0])
                entry[2] += 1
    return sum(size for size, links, here in seen.values() if here >= links)
