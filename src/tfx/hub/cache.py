"""Finding a model in the local cache without a single request, online or offline: the ref a branch or tag
names, the snapshot of that commit, and whether it holds what a run needs (config.json and weights).

Why tfx reads the refs itself and does not ask snapshot_download(local_files_only=True): measured in
huggingface_hub 2.4.0 (and pinned by tests/test_hub_cache.py), that call
  * refuses the snapshots tfx makes: once snapshot_download has cached the repository's file listing
    (trees/<commit>.json), a snapshot missing any listed file raises IncompleteSnapshotError, so one
    holding only tfx's minimal file set is "incomplete" whenever the repository also has, say,
    pytorch_model.bin or flax_model.msgpack; and tfx's choice of ONE weights format cannot be written as
    fixed allow_patterns (see files.select_files);
  * accepts any snapshot folder when no listing is cached (caches made by transformers or an older tfx),
    even one without weights left by an interrupted download;
  * knows only refs/main for "no revision", where a cache filled by commit alone has no ref;
  * reads refs/<revision> with open().read() after os.path.exists: a FIFO there blocks it for good and a
    link to /dev/zero fills memory.
So a ref is read here by `read_ref` (a small regular file, at most REF_LIMIT bytes), and each file is then
looked up with huggingface_hub's try_to_load_from_cache at that commit (which honours its .no_exist
markers and never reads a ref when given a commit)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tfx import registry
from tfx.hub.files import WEIGHT_FILES
from tfx.hub.names import COMMIT, validate_revision
from tfx.hub.settings import cache_dir, read_small_file

REF_LIMIT = 100  # a ref file holds a 40-character commit hash


def repo_dir(repo_id: str) -> Path:
    """The cache folder of a model repository: <cache>/models--owner--name (huggingface_hub's layout)."""
    return cache_dir() / ("models--" + repo_id.replace("/", "--"))


def read_ref(repo: Path, ref: str) -> str | None:
    """The commit refs/<ref> points at; None unless it is a small regular file holding a commit hash."""
    text = read_small_file(repo / "refs" / ref, REF_LIMIT)
    commit = text.strip() if text else ""
    return commit if COMMIT.fullmatch(commit) else None


def ref_problem(repo_id: str, ref: str) -> str | None:
    """What is wrong with refs/<ref> when the file is there but read_ref cannot use it (a FIFO, a directory,
    a device, a huge file, text that is no commit hash); None when it is absent or fine."""
    path = repo_dir(repo_id) / "refs" / ref
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken link" if path.is_symlink() else None
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    if read_ref(repo_dir(repo_id), ref) is not None:
        return None
    if os.stat(path).st_size > REF_LIMIT:
        return f"a file of {os.stat(path).st_size} bytes, not a {REF_LIMIT}-byte ref"
    return "a file that holds no commit hash"


def write_ref(repo: Path, ref: str, commit: str) -> None:
    """Record that branch or tag `ref` is at `commit`, atomically, so the next lookup finds the snapshot
    offline. snapshot_download writes refs only when it resolves a branch itself; tfx pins its download to
    the commit the plan saw (so every file comes from one commit), and records the branch here."""
    path = repo / "refs" / ref
    if read_ref(repo, ref) == commit:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, path)


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot of repo_id if the cache holds a usable one (config and weights); never touches
    the network. With no revision: the snapshot `main` points at, else the newest usable one."""
    validate_revision(revision)
    repo = repo_dir(repo_id)
    if not repo.is_dir():
        return None
    if revision and COMMIT.fullmatch(revision):
        commits = [revision]
    else:
        commit = read_ref(repo, revision or "main")
        commits = [commit] if commit else []
        if not commits and revision is None:
            snapshots = [p for p in _listdir(repo / "snapshots") if COMMIT.fullmatch(p.name) and p.is_dir()]
            commits = [p.name for p in sorted(snapshots, key=_mtime, reverse=True)]
    for commit in commits:
        path = _usable(repo_id, commit)
        if path is not None:
            return path
    return None


def _usable(repo_id: str, commit: str) -> Path | None:
    """The snapshot folder of commit if it holds config.json and one of WEIGHT_FILES. tfx fetches the
    weights last (files.download_groups), so such a snapshot holds the tokenizer files too."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> str | None:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir(), revision=commit)
        return found if isinstance(found, str) else None  # None, or the "known not to exist" marker

    config = cached("config.json")
    if config is None or not any(cached(f) for f in WEIGHT_FILES):
        return None
    return Path(config).parent


def find_cached(name: str, revision: str | None = None) -> tuple[str, Path] | None:
    """(repo id, snapshot) for a name, trying the registry's canonical id, then older ids it redirects from."""
    validate_revision(revision)
    info = registry.lookup(name)
    for repo_id in info.cache_ids if info else (name,):
        path = cached_snapshot(repo_id, revision)
        if path is not None:
            return repo_id, path
    return None


def _listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
