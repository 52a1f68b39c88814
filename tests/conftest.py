"""Shared pytest setup: hermetic, offline Hugging Face environment + tiny model hub cache.

Environment (set at import time, i.e. before any test module imports huggingface_hub or
transformers, which read these variables once at import):

* ``HF_HUB_OFFLINE=1``, ``HF_HUB_DISABLE_TELEMETRY=1``, ``TRANSFORMERS_NO_ADVISORY_WARNINGS=1``,
  ``HF_HUB_DISABLE_PROGRESS_BARS=1``, ``TOKENIZERS_PARALLELISM=false``;
* ``HF_HUB_CACHE`` -> the tiny-model hub cache (built lazily by the ``hub_cache`` fixture, its
  path is known up front because it only depends on the source of ``tiny_models.py`` and the
  library versions);
* ``HF_HOME`` -> a per-session temporary directory (no token, no user config).

Subprocesses (the real ``tfx`` CLI) inherit ``os.environ``; use the ``tfx_env`` fixture to get
an explicit copy.

The tiny models are cached on disk under ``<repo>/.pytest_cache/tfx-tiny-models/<hash>/hub``
(override the root with ``TFX_TINY_MODELS_DIR``) and rebuilt only when ``tiny_models.py`` or
the torch/transformers/tokenizers/sentencepiece/huggingface_hub versions change.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
TINY_MODELS_SOURCE = TESTS_DIR / "tiny_models.py"  # the shared training helpers

if str(TESTS_DIR) not in sys.path:  # make `import tiny_models` work from any test module
    sys.path.insert(0, str(TESTS_DIR))

_VERSIONED_PACKAGES = ("torch", "transformers", "tokenizers", "sentencepiece", "huggingface_hub", "safetensors")


#: Every module that builds tiny models: tests/tiny_*.py, each with REPOS (role -> repo ids) and
#: build_all(cache_dir, roles=None). Each is built into a folder of its own, keyed by its source (and
#: tiny_models.py's, the shared training helpers) and the library versions, so changing one module
#: rebuilds only its models; the hub cache the tests see is assembled from them with hard links.
BUILDER_MODULES = tuple(sorted(p.stem for p in TESTS_DIR.glob("tiny_*.py")))


def _versions_hash(h) -> None:
    for pkg in _VERSIONED_PACKAGES:
        try:
            version = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            version = "missing"
        h.update(f"\n{pkg}=={version}".encode())


def _module_hash(stem: str) -> str:
    h = hashlib.sha256(TINY_MODELS_SOURCE.read_bytes())
    if stem != "tiny_models":
        h.update((TESTS_DIR / f"{stem}.py").read_bytes())
    _versions_hash(h)
    return h.hexdigest()[:16]


MODULE_HASHES = {stem: _module_hash(stem) for stem in BUILDER_MODULES}


def _tiny_models_hash() -> str:
    h = hashlib.sha256()
    for stem, digest in MODULE_HASHES.items():
        h.update(f"{stem}={digest}\n".encode())
    return h.hexdigest()[:16]


TINY_MODELS_ROOT = Path(
    os.environ.get("TFX_TINY_MODELS_DIR") or REPO_ROOT / ".pytest_cache" / "tfx-tiny-models"
)
TINY_MODELS_DIR = TINY_MODELS_ROOT / _tiny_models_hash()
#: The directory used as HF_HUB_CACHE (exists once the `hub_cache` fixture has run).
HUB_CACHE_DIR = TINY_MODELS_DIR / "hub"

_HF_HOME = tempfile.mkdtemp(prefix="tfx-test-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)

#: Variables every test process and subprocess gets.
HF_TEST_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HOME": _HF_HOME,
    "HF_HUB_CACHE": str(HUB_CACHE_DIR),
    # tfx's own config and state (aliases, default models, chat history): never the developer's own
    "TFX_CONFIG": os.path.join(_HF_HOME, "tfx-config.toml"),
    "XDG_CONFIG_HOME": os.path.join(_HF_HOME, "config"),
    "XDG_STATE_HOME": os.path.join(_HF_HOME, "state"),
}
# Variables that would point the hub somewhere else or re-enable the network.
_HF_ENV_TO_DROP = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE",
                   "HF_ENDPOINT", "HF_HUB_ENABLE_HF_TRANSFER")


def _apply_env() -> None:
    for key in _HF_ENV_TO_DROP:
        os.environ.pop(key, None)
    os.environ.update(HF_TEST_ENV)
    # huggingface_hub reads its constants once, at import.  If something imported it before
    # this conftest (a plugin, say), patch the module-level constants it consults at call time.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
        constants.HF_HUB_CACHE = str(HUB_CACHE_DIR)
        constants.HF_HOME = _HF_HOME
        constants.HF_HUB_DISABLE_TELEMETRY = True


_apply_env()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: slow test (deselect with -m 'not slow')")


def _ensure_gitignored(root: Path) -> None:
    """Keep built models out of `git status` even when we create .pytest_cache before pytest."""
    root.mkdir(parents=True, exist_ok=True)
    if root.parent.name == ".pytest_cache" and not (root.parent / ".gitignore").exists():
        (root.parent / ".gitignore").write_text("# Created by pytest automatically.\n*\n")
    if not (root / ".gitignore").exists():
        (root / ".gitignore").write_text("*\n")


def _module_dir(stem: str) -> Path:
    return TINY_MODELS_ROOT / f"{stem}-{MODULE_HASHES[stem]}"


def _build_module(stem: str) -> Path:
    """One builder module's models, in their own folder (built unless there). Call with the lock held."""
    final = _module_dir(stem)
    if (final / "hub").is_dir():
        return final / "hub"
    import importlib

    module = importlib.import_module(stem)
    tmp = Path(tempfile.mkdtemp(prefix=f"tmp-{final.name}-", dir=TINY_MODELS_ROOT))
    try:
        t0 = time.perf_counter()
        timings = module.build_all(tmp / "hub")
        info = {
            "seconds": round(time.perf_counter() - t0, 2),
            "per_role": {k: round(v, 2) for k, v in timings.items()},
            "versions": {p: _version(p) for p in _VERSIONED_PACKAGES},
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2))
        if final.exists():  # a leftover without hub/: replace it
            shutil.rmtree(final)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "hub"


def build_tiny_models_cached() -> Path:
    """Build the tiny models into ``HUB_CACHE_DIR`` unless already there; return it.

    Each builder module is built into its own folder (only when its source changed); the hub cache is
    then assembled from them with hard links (snapshot symlinks kept). Safe against concurrent pytest
    processes (``fcntl.flock`` on a lock file) and interrupted builds (temporary sibling, then rename).
    """
    if HUB_CACHE_DIR.is_dir():
        return HUB_CACHE_DIR
    _ensure_gitignored(TINY_MODELS_ROOT)
    with open(TINY_MODELS_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if HUB_CACHE_DIR.is_dir():  # built by another process while we waited
                return HUB_CACHE_DIR
            parts = [_build_module(stem) for stem in BUILDER_MODULES]
            tmp = Path(tempfile.mkdtemp(prefix=f"tmp-{TINY_MODELS_DIR.name}-", dir=TINY_MODELS_ROOT))
            try:
                for part in parts:
                    for repo in sorted(part.iterdir()):
                        shutil.copytree(repo, tmp / "hub" / repo.name, symlinks=True, copy_function=os.link)
                (tmp / "modules.json").write_text(json.dumps(MODULE_HASHES, indent=2))
                if TINY_MODELS_DIR.exists():
                    shutil.rmtree(TINY_MODELS_DIR)
                os.chmod(tmp, 0o755)
                os.rename(tmp, TINY_MODELS_DIR)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _prune_stale_builds()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return HUB_CACHE_DIR


def _prune_stale_builds(max_age_s: float = 3600) -> None:
    """Remove builds for older versions of the builder modules and leftovers of crashed builds."""
    keep = {TINY_MODELS_DIR, *(_module_dir(stem) for stem in BUILDER_MODULES)}
    now = time.time()
    for entry in TINY_MODELS_ROOT.iterdir():
        if entry in keep or not entry.is_dir():
            continue
        try:
            if now - entry.stat().st_mtime > max_age_s:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "missing"


@pytest.fixture(scope="session")
def hub_cache() -> Path:
    """Path of a huggingface_hub cache holding every tiny model under all its repo ids.

    ``HF_HUB_CACHE`` already points there (set at conftest import); this fixture makes sure
    the models exist, building them once (~15 s) if needed.
    """
    path = build_tiny_models_cached()
    _apply_env()
    return path


@pytest.fixture
def tfx_env(hub_cache: Path) -> dict[str, str]:
    """A copy of ``os.environ`` for subprocesses: offline, pointed at the tiny hub cache."""
    env = dict(os.environ)
    for key in _HF_ENV_TO_DROP:
        env.pop(key, None)
    env.update(HF_TEST_ENV)
    env["HF_HUB_CACHE"] = str(hub_cache)
    return env
