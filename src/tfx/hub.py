"""Cache-first model resolution and minimal downloads through huggingface_hub, and the offline rules.

A model name becomes a local directory here, and only here: transformers is then pointed at that directory,
so it never talks to the network itself (it would retry for minutes behind a firewall)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tfx import registry
from tfx.errors import TfxError

# Short time-outs: a missing model must fail in seconds when the Hub is unreachable, not after minutes.
HUB_TIMEOUT_S = 5.0

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
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


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
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"} or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ).lower() in {"1", "true", "yes", "on"}


def select_files(filenames: list[str]) -> list[str]:
    """The files running a model needs: config, tokenizer, and one weights format (safetensors first).
    Never TensorFlow, Flax, ONNX or Rust weights, and never two formats."""
    top = [f for f in filenames if "/" not in f]
    wanted = [f for f in top if f in CONFIG_FILES or f in TOKENIZER_FILES]
    if "model.safetensors" in top:
        wanted.append("model.safetensors")
    elif "model.safetensors.index.json" in top:
        wanted += ["model.safetensors.index.json"] + [f for f in top if re.fullmatch(r"model-\d+-of-\d+\.safetensors", f)]
    elif "pytorch_model.bin" in top:
        wanted.append("pytorch_model.bin")
    elif "pytorch_model.bin.index.json" in top:
        wanted += ["pytorch_model.bin.index.json"] + [f for f in top if re.fullmatch(r"pytorch_model-\d+-of-\d+\.bin", f)]
    return wanted


def has_weights(path: Path) -> bool:
    return any(
        (path / f).exists()
        for f in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    )


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot of repo_id if the cache holds a usable one; never touches the network."""
    from huggingface_hub import snapshot_download  # heavy-ish: only when a model is resolved
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, OSError, ValueError):
        return None
    if (path / "config.json").exists() and has_weights(path):
        return path
    return None


def resolve(name: str, revision: str | None = None, download: bool = True) -> Resolved:
    """Turn a model name, hub id or local directory into a local directory, downloading only if needed."""
    local = Path(name).expanduser()
    if local.is_dir() and (name.startswith((".", "/", "~")) or (local / "config.json").exists()):
        if not (local / "config.json").exists():
            raise TfxError(f"{name} is a directory without a config.json.", "Point -m at a saved model directory.")
        return Resolved(name, str(local), local, None)
    info = registry.lookup(name)
    repo_ids = info.cache_ids if info else (name,)
    if not _REPO_ID.match(name):
        raise TfxError(f"'{name}' is not a model name or a model directory.", _close_hint(name))
    for repo_id in repo_ids:
        path = cached_snapshot(repo_id, revision)
        if path is not None:
            return Resolved(name, repo_id, path, info)
    repo_id = info.repo_id if info else name
    if is_offline():
        raise TfxError(
            f"{name} is not in the local cache and offline mode is on.",
            f"Run `tfx pull {name}` while online, or drop --offline / HF_HUB_OFFLINE.",
        )
    if not download:
        raise TfxError(f"{name} is not in the local cache.", f"Run `tfx pull {name}`.")
    path = download_model(repo_id, revision, display_name=name)
    return Resolved(name, repo_id, path, info)


def download_model(repo_id: str, revision: str | None = None, display_name: str | None = None, progress: bool = True) -> Path:
    """Download the minimal file set of repo_id into the cache and return its snapshot directory."""
    from huggingface_hub import HfApi, snapshot_download

    shown = display_name or repo_id
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=HUB_TIMEOUT_S)
        files = select_files([s.rfilename for s in info.siblings or []])
        if "config.json" not in files:
            raise TfxError(f"{shown} has no config.json on the Hub; it is not a transformers model.", _close_hint(shown))
        path = snapshot_download(repo_id, revision=info.sha, allow_patterns=files, etag_timeout=HUB_TIMEOUT_S)
    except TfxError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated below, unknown ones re-raised
        raise hub_error(exc, shown) from exc
    return Path(path)


def hub_error(exc: BaseException, name: str) -> BaseException:
    """Translate a huggingface_hub failure into a message that names the fix."""
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.GatedRepoError) or _status(exc) in (401, 403):
        return TfxError(
            f"{name} is gated or private and needs a Hub token.",
            "Log in with `hf auth login` or set HF_TOKEN, and accept the model's terms on its Hub page.",
        )
    if isinstance(exc, (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError)) or _status(exc) == 404:
        return TfxError(f"model {name} does not exist on the Hub.", _close_hint(name))
    if isinstance(exc, (hf_errors.OfflineModeIsEnabled, ConnectionError, TimeoutError, OSError)) or _is_network(exc):
        return TfxError(
            f"{name} is not in the local cache and the Hub is unreachable.",
            "Check your connection or proxy (HTTPS_PROXY), or use a model you have pulled (`tfx cache ls`).",
        )
    return exc


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_network(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError", "ProxyError"})


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _close_hint(name: str) -> str:
    close = registry.close_names(name)
    if close:
        return "Did you mean " + " or ".join(close) + "? `tfx models` lists known models."
    return "`tfx models` lists known models; `tfx search` finds others on the Hub."
