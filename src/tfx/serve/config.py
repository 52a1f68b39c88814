"""The server's settings and the parsing of its duration and size options; imports nothing heavy."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from tfx.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_KEEP_ALIVE = "5m"
DEFAULT_MAX_TOKENS_CAP = 1024
DEFAULT_BATCH_WINDOW_MS = 15
# --batching: continuous (generate requests join the running batch at its next step: transformers'
# continuous batching, serve.continuous), window (each batch waits DEFAULT_BATCH_WINDOW_MS for company and
# runs to its end), auto (continuous where the model, device and request allow it, as continuous does,
# but quietly: window elsewhere).
BATCHING_MODES = ("auto", "continuous", "window")
DEFAULT_BATCHING = "window"
DEFAULT_MAX_BODY = "8M"
# Bounds a single request cannot go past, whatever the flags: each is a cheap way to make the server
# allocate a lot (n and num_beams multiply the batch; inputs is the number of records in one request).
MAX_SEQUENCES = 32
MAX_INPUTS = 4096  # the default of --max-inputs
MAX_STOPS = 4  # OpenAI's limit on `stop`
MAX_STOP_CHARS = 64  # each stop string; transformers matches each against the whole vocabulary
# The request budget (--max-request-tokens): what one request may ask the model to produce, counted as
# inputs x sequences (n or num_beams) x new tokens for the generating tasks, and inputs x masks x top_k
# candidates for fill-mask (inputs x top_k for the other tasks that list candidates).
DEFAULT_MAX_REQUEST_TOKENS = 32768
DEFAULT_MAX_TOP_K = 100  # candidates per mask (fill-mask) or per input (the tasks with a top_k)
DEFAULT_MAX_MASKS = 32  # masks in one fill-mask input
DEFAULT_MAX_QUEUE = 8192  # inputs waiting or running on one model before new work gets 503

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_ORIGIN = re.compile(r"^https?://[^/\s]+$", re.IGNORECASE)
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
    max_inputs: int = MAX_INPUTS
    max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS
    max_top_k: int = DEFAULT_MAX_TOP_K
    max_masks: int = DEFAULT_MAX_MASKS
    max_queue: int = DEFAULT_MAX_QUEUE
    max_models: int | None = None  # None: no bound on the models resident at once
    batching: str = DEFAULT_BATCHING  # one of BATCHING_MODES
    insecure: bool = False  # listen beyond loopback without --api-key
    engine: str = "local"  # --backend: local (transformers) | ct2 | onnx | auto (serve.backends)
    compute_type: str = "auto"  # --engine ct2/auto: int8 on CPU
    aliases: dict[str, str] = field(default_factory=dict)  # --alias NAME=MODEL (serve.models.resolve_alias)
    allowed_hosts: list[str] = field(default_factory=list)  # --allowed-hosts: Host headers besides loopback and --host
    allowed_origins: list[str] = field(default_factory=list)  # --allowed-origins: CORS, and the Origins let in


def check(settings: Settings) -> None:
    """The security defaults and the limits' ranges, before anything starts: a UsageError names the fix."""
    if settings.api_key is not None and not settings.api_key.strip():
        raise UsageError("--api-key is empty or only whitespace: no client could send it.", "Give a real key, e.g. --api-key \"$(openssl rand -hex 16)\".")
    for origin in settings.allowed_origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise UsageError(f"--allowed-origins '{origin}' is not an origin.", "Write scheme://host[:port], e.g. http://localhost:3000, without a path.")
    if not settings.api_key and not settings.insecure and not is_loopback(settings.host):
        raise UsageError(
            f"--host {settings.host} is reachable from other machines and the server has no --api-key.",
            "Add --api-key KEY (or TFX_API_KEY), or --insecure to serve anyone who can reach the port.",
        )
    if settings.allow_pull and settings.trust_remote_code:
        raise UsageError(
            "--allow-pull with --trust-remote-code would let any client run the code of any Hub repository.",
            "Drop one: pull the trusted models first (tfx pull) and start with -m, or serve without remote code.",
        )
    if settings.engine not in ("local", "ct2", "onnx", "auto"):
        raise UsageError(f"--backend {settings.engine} is not one tfx serve has.", "Use transformers, ct2, onnx or auto.")
    from tfx.ct2 import COMPUTE_TYPES  # the names only: nothing heavy

    if settings.compute_type not in COMPUTE_TYPES:
        raise UsageError(f"unknown --compute-type '{settings.compute_type}'.", f"Use one of: {', '.join(COMPUTE_TYPES)}.")
    if settings.compute_type != "auto" and settings.engine == "local":
        raise UsageError(f"--compute-type {settings.compute_type} applies to the ct2 and onnx backends.", "Add --backend ct2, onnx or auto, or leave --compute-type out.")
    if settings.batching not in BATCHING_MODES:
        raise UsageError(f"unknown --batching '{settings.batching}'.", f"Use one of: {', '.join(BATCHING_MODES)}.")
    for name in ("max_inputs", "max_request_tokens", "max_top_k", "max_masks", "max_queue"):
        if getattr(settings, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1.", "Leave it out for the default.")
    if settings.max_models is not None:
        if settings.max_models < 1:
            raise UsageError("--max-models must be at least 1.", "Leave it out for no bound.")
        if len(set(settings.models)) > settings.max_models:
            raise UsageError(f"-m names {len(set(settings.models))} models, more than --max-models {settings.max_models}.", "Raise --max-models or name fewer.")


def parse_aliases(values: list[str]) -> dict[str, str]:
    """--alias NAME=MODEL values -> {NAME: MODEL}; a UsageError names a malformed one."""
    aliases: dict[str, str] = {}
    for value in values:
        name, sep, model = (part.strip() for part in value.partition("="))
        if not sep or not name or not model:
            raise UsageError(f"--alias '{value}' is not NAME=MODEL.", "Write e.g. --alias gpt=openai-community/gpt2.")
        if name in aliases and aliases[name] != model:
            raise UsageError(f"--alias {name} names two models ({aliases[name]} and {model}).", "Give each alias one model.")
        aliases[name] = model
    for name, model in aliases.items():
        if model in aliases:
            raise UsageError(f"--alias {name}={model}: {model} is itself an alias.", "Point each alias at a model.")
    return aliases


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
