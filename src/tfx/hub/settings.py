"""The environment tfx gives huggingface_hub (set before it is imported), the offline state, the cache
folder, where a Hub token would come from (never the token), and tfx's one-line notes on stderr."""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

log = logging.getLogger("tfx")

# Short time-outs: a missing model must fail in seconds when the Hub is unreachable, not after minutes.
HUB_TIMEOUT_S = 5.0


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


def say(message: str) -> None:
    """A note for the person at the terminal (on stderr); --quiet silences it."""
    if log.getEffectiveLevel() < logging.ERROR:
        print(f"tfx: {message}", file=sys.stderr, flush=True)


def progress_wanted() -> bool:
    """A bar for a person at a terminal; --quiet (tfx's logger at ERROR) turns it off."""
    return sys.stderr.isatty() and log.getEffectiveLevel() < logging.ERROR


def quiet_hub_logs() -> None:
    """huggingface_hub logs each retry and fallback to stderr; tfx says what went wrong in one line itself."""
    if log.getEffectiveLevel() > logging.INFO:
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()


def read_small_file(path: Path | str, limit: int) -> str | None:
    """The text of path if it is a regular file (symlinks followed), at most `limit` bytes of it; None for
    anything else. A FIFO, a device (/dev/zero) or a huge file can neither hang tfx nor fill its memory:
    the type is checked before opening, the file is opened non-blocking and checked again, and only
    `limit` bytes are read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between the two checks
            return None
        return os.read(fd, limit).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def token_source() -> str | None:
    """Where a Hub token would come from (never the token): HF_OIDC_RESOURCE, HF_TOKEN, the token file, or None.

    Not huggingface_hub's get_token(): measured in huggingface_hub 2.4.0, get_token() makes requests. With
    HF_OIDC_RESOURCE set it exchanges a CI id token for a Hub token over the network (and raises when that
    fails); for a token file holding an OAuth login within a day of expiry it POSTs to
    {HF_ENDPOINT}/oauth/token to refresh it (under a file lock waited on for up to 30 s). `tfx env` and the
    gated-model check only need to know whether a token is configured, so this reads the same sources, in
    get_token's order, without calling it (tests/test_hub_cache.py pins that get_token does call out)."""
    if os.environ.get("HF_OIDC_RESOURCE"):
        return "HF_OIDC_RESOURCE"
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var, "").strip():
            return var
    from huggingface_hub import constants

    text = read_small_file(constants.HF_TOKEN_PATH, 64 * 1024)
    return constants.HF_TOKEN_PATH if text and text.strip() else None
