"""Downloads of the minimal file set through huggingface_hub: a plan (the repository's info, then a
snapshot_download dry run for sizes and for what is cached already), then the fetch (snapshot_download
with allow_patterns, weights last, one progress bar). Failures propagate as the library raises them, with
the model and revision attached (errors.about), for errors.explain to put into one line.

Time limits: model_info is asked with HUB_TIMEOUT_S. snapshot_download itself lists the repository tree
with no time-out at all and five retries (huggingface_hub 2.4.0), so the dry run, which lists it first,
runs under PLAN_DEADLINE_S; a Hub that answers nothing fails the plan in seconds, before any download."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx import errors, registry
from tfx.hub.cache import repo_dir, write_ref
from tfx.hub.files import WEIGHT_FILES, download_groups, select_files
from tfx.hub.names import COMMIT, validate_revision
from tfx.hub.progress import DownloadBar
from tfx.hub.search import with_deadline
from tfx.hub.settings import HUB_TIMEOUT_S, format_size, quiet_hub_logs, say, token_source

PLAN_DEADLINE_S = 15.0


@dataclass
class Plan:
    """What a download of one model will fetch: the commit, each file with its size, and which are cached."""

    repo_id: str
    revision: str | None
    commit: str
    files: list[tuple[str, int | None]]
    config: dict[str, Any] = field(default_factory=dict)  # the Hub's summary of config.json
    gated: bool = False
    cached: frozenset[str] = frozenset()  # files the cache holds already (the dry run's is_cached)

    @property
    def total(self) -> int:
        """Bytes still to download."""
        return sum(size or 0 for name, size in self.files if name not in self.cached)

    @property
    def filenames(self) -> list[str]:
        return [name for name, _ in self.files]

    def describe(self) -> str:
        """'7 files, 612.4 kB', or '1 of 7 files, 573.0 kB' when some are cached already."""
        count = len(self.files)
        todo = count - len(self.cached)
        files = f"{count} files" if todo == count else f"{todo} of {count} files"
        return f"{files}, {format_size(self.total)}"


def plan_download(repo_id: str, revision: str | None = None, display_name: str | None = None, task: str | None = None) -> Plan:
    """Ask the Hub what the model's repository holds, pick the files to fetch, and size them. With a task,
    the model must be able to do it (TaskMismatch), checked on the Hub's summary of its config.json right
    after the first request, before the dry run."""
    validate_revision(revision)
    shown = display_name or repo_id
    quiet_hub_logs()
    from huggingface_hub import HfApi, snapshot_download

    from tfx.explain import auth_error, close_hint

    with errors.about(model=shown, revision=revision, token=token_source()):
        info = HfApi().model_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S)
        if info.gated and token_source() is None:
            raise auth_error(shown, gated=True, status=401)  # every file would answer 401: say so first
        config = dict(info.config or {})
        if task:
            family = registry.family_of(registry.lookup(shown) or registry.lookup(repo_id), config)
            names = {s.rfilename for s in info.siblings or []}
            registry.check_model(shown, task, family, config, sentence_transformer="modules.json" in names)
        files = select_files([s.rfilename for s in info.siblings or []])
        if "config.json" not in files:
            raise errors.TfxError(f"{shown} has no config.json on the Hub; it is not a transformers model.", close_hint(shown))
        if not any(f in WEIGHT_FILES for f in files):
            raise errors.TfxError(
                f"{shown} has no PyTorch weights on the Hub (no model.safetensors or pytorch_model.bin).",
                "tfx runs PyTorch models only; `tfx search` finds others.",
            )
        commit = info.sha or revision or "main"
        silent = DownloadBar(0, shown, enabled=False).tqdm_class()

        def dry_run() -> list[Any]:
            return snapshot_download(
                repo_id, revision=commit, allow_patterns=files, dry_run=True, etag_timeout=HUB_TIMEOUT_S, tqdm_class=silent
            )

        found = {f.filename: f for f in with_deadline(dry_run, PLAN_DEADLINE_S)}
    sizes = [(name, found[name].file_size if name in found else None) for name in files]
    cached = frozenset(name for name, f in found.items() if not f.will_download)
    return Plan(repo_id, revision, commit, sizes, config, bool(info.gated), cached)


def fetch(plan: Plan, display_name: str | None = None, progress: bool = False) -> Path:
    """Download the planned files into the cache (cached ones are not fetched again); the snapshot folder."""
    from huggingface_hub import snapshot_download

    shown = display_name or plan.repo_id
    bar = DownloadBar(plan.total, shown, progress)
    path = None
    try:
        with errors.about(model=shown, revision=plan.revision, token=token_source()):
            for group in download_groups(plan.filenames):
                path = snapshot_download(
                    plan.repo_id, revision=plan.commit, allow_patterns=group, etag_timeout=HUB_TIMEOUT_S, tqdm_class=bar.tqdm_class()
                )
    finally:
        bar.stop()
    if COMMIT.fullmatch(plan.commit) and plan.commit != plan.revision:
        write_ref(repo_dir(plan.repo_id), plan.revision or "main", plan.commit)
    return Path(path)


def download_model(repo_id: str, revision: str | None = None, display_name: str | None = None, progress: bool = True) -> Path:
    """Download the minimal file set of repo_id into the cache and return its snapshot directory."""
    shown = display_name or repo_id
    plan = plan_download(repo_id, revision, shown)
    say(f"downloading {shown}: {plan.describe()}")
    return fetch(plan, shown, progress)
