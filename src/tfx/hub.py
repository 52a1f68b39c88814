"""Cache-first model resolution, minimal downloads and the local cache, through huggingface_hub; the
offline rules and the translation of Hub failures into messages that name the fix.

A model name becomes a local directory here, and only here: transformers is then pointed at that directory,
so it never talks to the network itself (it would retry for minutes behind a firewall). A model already in
the cache is found by reading the cache's folders: no request is made, online or not."""

from __future__ import annotations

import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx import registry
from tfx.errors import TfxError

log = logging.getLogger("tfx")

# Short time-outs: a missing model must fail in seconds when the Hub is unreachable, not after minutes.
HUB_TIMEOUT_S = 5.0
# HfApi.list_models retries a failed connection five times with back-off and sends no time-out at all,
# so a search runs on a thread that is given up on after this long.
SEARCH_DEADLINE_S = 8.0

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "source.spm",
    "target.spm",
    "target_vocab.json",
    "sentencepiece.bpe.model",
    "sentencepiece.model",
    "tokenizer.model",
    "chat_template.jinja",
)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_SAFETENSORS_SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")
_BIN_SHARD = re.compile(r"pytorch_model-\d+-of-\d+\.bin")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Hub names for the tasks tfx runs (its `pipeline_tag`s), and tfx's own names for them.
PIPELINE_TAGS = {"generate": "text-generation", "fill-mask": "fill-mask", "translate": "translation", "summarize": "summarization"}


@dataclass(frozen=True)
class Resolved:
    name: str  # what the user typed
    repo_id: str  # hub id, or the directory for a local model
    path: Path  # local directory holding config, tokenizer and weights
    info: registry.ModelInfo | None


def configure_env(offline: bool = False) -> None:
    """Set huggingface_hub's knobs before it is imported (it reads them once, at import)."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(HUB_TIMEOUT_S)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def is_offline() -> bool:
    return any(os.environ.get(var, "").lower() in {"1", "true", "yes", "on"} for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cache_dir() -> Path:
    from huggingface_hub import constants  # cheap: reads the environment only

    return Path(constants.HF_HUB_CACHE)


def format_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - unreachable


# ---- which files a model needs ------------------------------------------------------------------------


def select_files(filenames: list[str]) -> list[str]:
    """The files running a model needs: config, tokenizer, and one weights format (safetensors first).
    Never TensorFlow, Flax, ONNX or Rust weights, and never two formats. Weights come last, so a cached
    snapshot that has its weights has everything else too (see `cached_snapshot`)."""
    top = [f for f in filenames if "/" not in f]
    wanted = [f for f in top if f in CONFIG_FILES or f in TOKENIZER_FILES]
    if "model.safetensors" in top:
        wanted.append("model.safetensors")
    elif "model.safetensors.index.json" in top:
        wanted += ["model.safetensors.index.json"] + sorted(f for f in top if _SAFETENSORS_SHARD.fullmatch(f))
    elif "pytorch_model.bin" in top:
        wanted.append("pytorch_model.bin")
    elif "pytorch_model.bin.index.json" in top:
        wanted += ["pytorch_model.bin.index.json"] + sorted(f for f in top if _BIN_SHARD.fullmatch(f))
    return wanted


def has_weights(path: Path) -> bool:
    return any((path / f).exists() for f in WEIGHT_FILES)


# ---- the local cache, read without a request -----------------------------------------------------------


def repo_dir(repo_id: str) -> Path:
    return cache_dir() / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot of repo_id if the cache holds a usable one (config and weights); never touches the
    network. With no revision: the snapshot `main` points at, else the newest usable one."""
    repo = repo_dir(repo_id)
    if not repo.is_dir():
        return None
    if revision and _COMMIT.fullmatch(revision):
        candidates = [repo / "snapshots" / revision]
    else:
        commit = _read_ref(repo, revision or "main")
        candidates = [repo / "snapshots" / commit] if commit else []
        if not candidates and revision is None:
            snapshots = [p for p in (repo / "snapshots").glob("*") if p.is_dir()]
            candidates = sorted(snapshots, key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if (path / "config.json").exists() and has_weights(path):
            return path
    return None


def _read_ref(repo: Path, ref: str) -> str | None:
    try:
        commit = (repo / "refs" / ref).read_text().strip()
    except OSError:
        return None
    return commit if _COMMIT.fullmatch(commit) else None


def _write_ref(repo: Path, ref: str, commit: str) -> None:
    """What snapshot_download does for a branch or tag, so the next lookup finds this snapshot offline."""
    path = repo / "refs" / ref
    if _read_ref(repo, ref) == commit:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, path)


# ---- resolution ------------------------------------------------------------------------------------------


def resolve(name: str, revision: str | None = None, download: bool = True) -> Resolved:
    """Turn a model name, hub id or local directory into a local directory, downloading only if needed."""
    local = Path(name).expanduser()
    if local.is_dir() and (name.startswith((".", "/", "~")) or (local / "config.json").exists()):
        if not (local / "config.json").exists():
            raise TfxError(f"{name} is a directory without a config.json.", "Point -m at a saved model directory.")
        return Resolved(name, str(local), local, None)
    check_name(name)
    info = registry.lookup(name)
    found = find_cached(name, revision)
    if found is not None:
        return Resolved(name, found[0], found[1], info)
    repo_id = info.repo_id if info else name
    if is_offline():
        raise TfxError(
            f"{name} is not in the local cache and offline mode is on.",
            f"Run `tfx pull {name}` while online, or drop --offline / HF_HUB_OFFLINE.",
        )
    if not download:
        raise TfxError(f"{name} is not in the local cache.", f"Run `tfx pull {name}`.")
    path = download_model(repo_id, revision, display_name=name, progress=_progress_wanted())
    return Resolved(name, repo_id, path, info)


def check_name(name: str) -> None:
    if not _REPO_ID.match(name):
        raise TfxError(f"'{name}' is not a model name or a model directory.", close_hint(name))


def find_cached(name: str, revision: str | None = None) -> tuple[str, Path] | None:
    """(repo id, snapshot) for a name, trying the registry's canonical id, then older ids it redirects from."""
    info = registry.lookup(name)
    for repo_id in info.cache_ids if info else (name,):
        path = cached_snapshot(repo_id, revision)
        if path is not None:
            return repo_id, path
    return None


def _progress_wanted() -> bool:
    """A bar for a person at a terminal; --quiet (tfx's logger at ERROR) turns it off."""
    return sys.stderr.isatty() and log.getEffectiveLevel() < logging.ERROR


def say(message: str) -> None:
    if log.getEffectiveLevel() < logging.ERROR:
        print(f"tfx: {message}", file=sys.stderr, flush=True)


# ---- downloads ------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a download of one model will fetch: the commit, and each file with its size."""

    repo_id: str
    revision: str | None
    commit: str
    files: list[tuple[str, int | None]]
    config: dict[str, Any] = field(default_factory=dict)  # the Hub's summary of config.json
    gated: bool = False

    @property
    def total(self) -> int:
        return sum(size or 0 for _, size in self.files)


def plan_download(repo_id: str, revision: str | None = None, display_name: str | None = None) -> Plan:
    """Ask the Hub what the model's repository holds (one request) and pick the files to fetch."""
    shown = display_name or repo_id
    _quiet_hub_logs()
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - translated below, unknown ones re-raised
        raise hub_error(exc, shown, revision) from None
    if info.gated and token_source() is None:
        raise _auth_error(shown, gated=True, status=401)  # every file would answer 401: say so before starting
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    files = select_files(list(sizes))
    if "config.json" not in files:
        raise TfxError(f"{shown} has no config.json on the Hub; it is not a transformers model.", close_hint(shown))
    if not any(f in WEIGHT_FILES for f in files):
        raise TfxError(
            f"{shown} has no PyTorch weights on the Hub (no model.safetensors or pytorch_model.bin).",
            "tfx runs PyTorch models only; `tfx search` finds others.",
        )
    commit = info.sha or revision or "main"
    return Plan(repo_id, revision, commit, [(f, sizes.get(f)) for f in files], dict(info.config or {}), bool(info.gated))


def fetch(plan: Plan, display_name: str | None = None, progress: bool = False) -> Path:
    """Download the planned files into the cache (files already there are not fetched again)."""
    from huggingface_hub import hf_hub_download

    shown = display_name or plan.repo_id
    bar = DownloadBar(plan.total, shown, progress)
    path = None
    try:
        for filename, _size in plan.files:
            path = hf_hub_download(
                plan.repo_id, filename, revision=plan.commit, etag_timeout=HUB_TIMEOUT_S, tqdm_class=bar.tqdm_class()
            )
    except Exception as exc:  # noqa: BLE001 - translated below, unknown ones re-raised
        raise hub_error(exc, shown, plan.revision) from None
    finally:
        bar.stop()
    if _COMMIT.fullmatch(plan.commit) and plan.commit != plan.revision:
        _write_ref(repo_dir(plan.repo_id), plan.revision or "main", plan.commit)
    return Path(path).parent


def download_model(repo_id: str, revision: str | None = None, display_name: str | None = None, progress: bool = True) -> Path:
    """Download the minimal file set of repo_id into the cache and return its snapshot directory."""
    shown = display_name or repo_id
    plan = plan_download(repo_id, revision, shown)
    say(f"downloading {shown}: {len(plan.files)} files, {format_size(plan.total)}")
    return fetch(plan, shown, progress)


def _quiet_hub_logs() -> None:
    """huggingface_hub logs each retry and fallback to stderr; tfx says what went wrong in one line itself."""
    if log.getEffectiveLevel() > logging.INFO:
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()


class DownloadBar:
    """One byte-counting bar on stderr for all of a model's files, fed by huggingface_hub's per-file
    progress hooks (its `tqdm_class`); nothing at all when disabled."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.progress = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self.task = self.progress.add_task(label, total=total or None)
        self.progress.start()

    def advance(self, n: float | None) -> None:
        if self.progress is not None and n:
            self.progress.update(self.task, advance=n)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def tqdm_class(self) -> type:
        bar = self

        class Hook:
            """The part of tqdm's interface huggingface_hub calls (plain and Xet downloads)."""

            def __init__(self, *args: Any, **kwargs: Any):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc: Any) -> None:
                pass

            def update(self, n: float | None = 1) -> None:
                bar.advance(n)

            def update_transfer(self, n: float | None = 1) -> None:
                pass  # network bytes (Xet); the bar counts file bytes

            def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
                pass

            set_transfer_postfix_str = set_description = set_postfix_str

            def refresh(self) -> None:
                pass

            def close(self) -> None:
                pass

        return Hook


# ---- the cache, through huggingface_hub's cache API ------------------------------------------------------


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

    try:
        return scan_cache_dir(cache_dir())
    except (CacheNotFound, ValueError):
        return None


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


# ---- search ---------------------------------------------------------------------------------------------


def search(query: str | None, task: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Hub models (transformers ones) matching query, most downloaded first."""
    if is_offline():
        raise TfxError(
            "search needs the Hub, and offline mode is on.",
            "Drop --offline / HF_HUB_OFFLINE to search; offline, `tfx models` and `tfx cache ls` list what you have.",
        )
    _quiet_hub_logs()
    from huggingface_hub import HfApi

    def call() -> list[dict[str, Any]]:
        found = HfApi().list_models(
            search=query or None, pipeline_tag=task, filter="transformers", sort="downloads", limit=limit
        )
        return [{"id": m.id, "task": m.pipeline_tag, "downloads": m.downloads or 0, "likes": m.likes or 0} for m in found]

    try:
        rows = with_deadline(call, SEARCH_DEADLINE_S)
    except Exception as exc:  # noqa: BLE001 - translated below, unknown ones re-raised
        error = hub_error(exc, "search")
        if isinstance(error, TfxError) and "unreachable" in error.message:
            raise TfxError(
                "cannot search: the Hub is unreachable.",
                "Check your connection or proxy (HTTPS_PROXY, HF_ENDPOINT); offline, `tfx models` lists the models tfx knows.",
            ) from None
        raise error from None
    return sorted(rows, key=lambda r: r["downloads"], reverse=True)


def with_deadline(call: Callable[[], Any], seconds: float) -> Any:
    """call() on a daemon thread; TimeoutError if it has not returned after `seconds` (it is abandoned)."""
    box: queue.Queue = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            box.put((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.put((False, exc))

    threading.Thread(target=run, name="tfx-hub", daemon=True).start()
    try:
        ok, value = box.get(timeout=seconds)
    except queue.Empty:
        raise TimeoutError(f"no answer from the Hub in {seconds:.0f} s") from None
    if not ok:
        raise value
    return value


# ---- errors ---------------------------------------------------------------------------------------------


def hub_error(exc: BaseException, name: str, revision: str | None = None) -> BaseException:
    """Translate a huggingface_hub failure into a message that names the fix; unknown ones are returned as is."""
    from huggingface_hub import errors as hf_errors

    chain = list(_chain(exc))
    status = next((s for s in map(_status, chain) if s is not None), None)
    gated = any(isinstance(e, hf_errors.GatedRepoError) for e in chain)
    if gated or status in (401, 403):
        return _auth_error(name, gated, status)
    if any(isinstance(e, hf_errors.RevisionNotFoundError) for e in chain):
        return TfxError(f"{name} has no revision '{revision}' on the Hub.", "Use a branch, tag or commit of the repository, or drop --revision.")
    if any(isinstance(e, hf_errors.RemoteEntryNotFoundError) for e in chain):
        return TfxError(f"a file of {name} disappeared from the Hub while downloading.", "Run the command again.")
    if status == 404 or any(isinstance(e, hf_errors.RepositoryNotFoundError) for e in chain):
        return TfxError(f"model {name} does not exist on the Hub.", close_hint(name))
    if status is not None and status >= 500:
        return TfxError(f"the Hub answered {status} for {name}.", "It is having trouble; try again in a minute.")
    if any(isinstance(e, (hf_errors.OfflineModeIsEnabled, ConnectionError, TimeoutError)) for e in chain) or _is_network(chain):
        return TfxError(
            f"{name} is not in the local cache and the Hub is unreachable.",
            "Check your connection or proxy (HTTPS_PROXY, HF_ENDPOINT), or use a model you have pulled (`tfx cache ls`).",
        )
    return exc


def _auth_error(name: str, gated: bool, status: int | None) -> TfxError:
    login = "log in with `hf auth login` or set HF_TOKEN"
    if token_source() is None:
        # Without a token the Hub answers 401 for private repos and for missing ones alike.
        what = "gated" if gated else "gated or private (or it does not exist)"
        close = "" if gated else " ".join(registry.close_names(name)[:2])
        return TfxError(
            f"{name} is {what} and the Hub wants a token.",
            f"If you have access, {login}; for a gated model, first accept its terms on its Hub page."
            + (f" Did you mean {close.replace(' ', ' or ')}?" if close else ""),
        )
    return TfxError(
        f"{name} is gated or private and your Hub token has no access to it (HTTP {status or 403}).",
        f"Accept the model's terms on its Hub page, or {login} with a token that can read it.",
    )


def token_source() -> str | None:
    """Where a Hub token would come from (never the token): HF_TOKEN, the token file, or None.
    Read without huggingface_hub's get_token(), which may call the network to refresh one."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var, "").strip():
            return var
    from huggingface_hub import constants

    try:
        if Path(constants.HF_TOKEN_PATH).read_text().strip():
            return constants.HF_TOKEN_PATH
    except OSError:
        pass
    return None


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_network(chain: list[BaseException]) -> bool:
    names = {type(e).__name__ for e in chain}
    network = {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError", "ProxyError", "LocalEntryNotFoundError"}
    return bool(names & network)


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def close_hint(name: str) -> str:
    close = registry.close_names(name)
    if close:
        return "Did you mean " + " or ".join(close) + "? `tfx models` lists known models; `tfx search` finds others."
    return "`tfx models` lists known models; `tfx search` finds others on the Hub."


