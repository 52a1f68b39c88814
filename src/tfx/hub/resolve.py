"""Cache-first resolution: a model name, Hub id or local directory becomes a local directory here, and only
here. transformers is then pointed at that directory, so it never talks to the network itself (it would
retry for minutes behind a firewall). A cached model is found without a request, online or not; anything
else is downloaded (the minimal file set) unless offline mode or the caller forbids it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfx import errors, registry
from tfx.hub.cache import find_cached, ref_problem, repo_dir
from tfx.hub.download import download_model
from tfx.hub.names import COMMIT, check_name, validate_revision
from tfx.hub.settings import is_offline, progress_wanted


@dataclass(frozen=True)
class Resolved:
    name: str  # what the user typed
    repo_id: str  # hub id, or the directory for a local model
    path: Path  # local directory holding config, tokenizer and weights
    info: registry.ModelInfo | None


def resolve(name: str, revision: str | None = None, download: bool = True, local_dirs: bool = True) -> Resolved:
    """Turn a model name, hub id or local directory into a local directory, downloading only if needed.
    Raises NotCached when the model is not cached and may not be downloaded (offline, or download=False).
    local_dirs=False: a Hub id only, the filesystem is not looked at (the server, for its clients' names)."""
    validate_revision(revision)
    if not local_dirs:
        check_name(name)
    local = Path(name).expanduser()
    if local_dirs and local.is_dir() and (name.startswith((".", "/", "~")) or (local / "config.json").exists()):
        if not (local / "config.json").exists():
            raise errors.TfxError(f"{name} is a directory without a config.json.", "Point -m at a saved model directory.")
        return Resolved(name, str(local), local, None)
    check_name(name)
    info = registry.lookup(name)
    found = find_cached(name, revision)
    if found is not None:
        return Resolved(name, found[0], found[1], info)
    if revision and not COMMIT.fullmatch(revision):
        for repo_id in info.cache_ids if info else (name,):
            problem = ref_problem(repo_id, revision)
            if problem is not None:  # not "not cached": the cache names the revision, unreadably
                where = repo_dir(repo_id) / "refs" / revision
                raise errors.TfxError(f"the cache's ref for {name} at {revision} is {problem}: {where}.", f"Remove it; `tfx pull {name} --revision {revision}` writes it again.")
    if is_offline():
        raise errors.NotCached(
            f"{name} is not in the local cache and offline mode is on.",
            f"Run `tfx pull {name}` while online, or drop --offline / HF_HUB_OFFLINE.",
        )
    if not download:
        raise errors.NotCached(f"{name} is not in the local cache.", f"Run `tfx pull {name}`.")
    repo_id = info.repo_id if info else name
    path = download_model(repo_id, revision, display_name=name, progress=progress_wanted())
    return Resolved(name, repo_id, path, info)
