"""The server's settings and the parsing of its duration and size options; imports nothing heavy."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tfx.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_KEEP_ALIVE = "5m"
DEFAULT_MAX_TOKENS_CAP = 1024
DEFAULT_BATCH_WINDOW_MS = 15
DEFAULT_MAX_BODY = "8M"
# Bounds a single request cannot go past, whatever the flags: each is a cheap way to make the server
# allocate a lot (n and num_beams multiply the batch; inputs is the number of records in one request).
MAX_SEQUENCES = 32
MAX_INPUTS = 4096

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_SIZE = re.compile(r"^(\d+)([kmg]i?b?|b)?$")


@dataclass
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    models: list[str] = field(default_factory=list)
    keep_alive_s: float | None = 300.0  # None: never unload
    api_key: str | None = None
    max_tokens_cap: int = DEFAULT_MAX_TOKENS_CAP
    batch_window_s: float = DEFAULT_BATCH_WINDOW_MS / 1000
    max_batch_size: int | None = None  # None: the task's own default for the device
    max_body_bytes: int = 8 << 20
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    allow_pull: bool = False
    verbose: bool = False
    quiet: bool = False


def parse_duration(text: str) -> float | None:
    """'30s', '5m', '1h', '500ms' or plain seconds -> seconds; '-1', 'never' or 'forever' -> None."""
    value = text.strip().lower()
    if value in ("-1", "never", "forever", "inf"):
        return None
    match = _DURATION.match(value)
    if not match:
        raise UsageError(f"--keep-alive '{text}' is not a duration.", "Use e.g. 30s, 5m, 1h, 0 (unload at once) or -1 (never).")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def parse_size(text: str) -> int:
    """'8M', '512k', '1G' or plain bytes -> bytes (binary multiples)."""
    match = _SIZE.match(text.strip().lower())
    if not match or int(match.group(1)) < 1:
        raise UsageError(f"--max-body '{text}' is not a size.", "Use e.g. 512k, 8M or 1G.")
    unit = (match.group(2) or "b")[0]
    return int(match.group(1)) << {"b": 0, "k": 10, "m": 20, "g": 30}[unit]
