"""tfx env: versions, devices, cache and offline state, for bug reports and sanity checks."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

from tfx.cli.common import check_format as _check_format, execute as _execute, setup as _setup
from tfx.cli.hubcmds import ListFormat
from tfx.io import print_json

DEVICE_PROBE_TIMEOUT_S = 60
# The proxy variables httpx (huggingface_hub's client) reads; any of them may carry user:password@.
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")

ENV_EXAMPLES = """Examples:

  tfx env

  tfx env --no-devices --format json
"""


DEVICE_PROBE = r"""
import json, torch
cuda = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        cuda.append({"device": f"cuda:{i}", "name": p.name, "memory_bytes": p.total_memory})
mps = getattr(torch.backends, "mps", None)
print(json.dumps({"cuda": cuda, "mps": bool(mps and mps.is_available())}))
"""


def env(
    fmt: ListFormat = "text",
    probe_devices: Annotated[bool, typer.Option("--devices/--no-devices", help="Probe CUDA and MPS devices (in a child process that imports torch, ~2 s).")] = True,
) -> None:
    """Versions, devices, the cache and its size, offline state and whether a Hub token is set (never its value)."""

    def body() -> int:
        _setup()
        _check_format(fmt, ("text", "json"))
        info = env_info(probe_devices)
        if fmt == "json":
            print_json(info)
            return 0
        from tfx import hub

        lines = [(name, version or "not installed") for name, version in info["versions"].items()]
        lines.append(("python", f"{info['python']} ({info['platform']})"))
        lines.append(("devices", _devices_text(info["devices"])))
        cache = info["cache"]
        lines.append(("cache", f"{cache['dir']} ({cache['models']} models, {hub.format_size(cache['size_on_disk'])})"))
        lines.append(("offline", "yes (HF_HUB_OFFLINE)" if info["offline"] else "no"))
        lines.append(("hub endpoint", info["endpoint"]))
        proxies = info["proxies"]
        lines.append(("proxy", ", ".join(f"{k}={v}" for k, v in proxies.items()) if proxies else "none"))
        token = info["token"]
        lines.append(("hub token", f"configured ({token['source']})" if token["configured"] else "not configured (`hf auth login` or HF_TOKEN)"))
        width = max(len(k) for k, _ in lines)
        sys.stdout.write("".join(f"{k.ljust(width)}  {v}\n" for k, v in lines))
        return 0

    _execute(body)


def env_info(probe_devices: bool = True) -> dict[str, Any]:
    import platform
    from importlib import metadata

    from huggingface_hub import constants

    from tfx import hub

    versions = {}
    # tfx's own distribution is tfx-cli on PyPI (there, "tfx" is TensorFlow Extended); reported as tfx
    for name, dist in (("tfx", "tfx-cli"), ("torch", "torch"), ("transformers", "transformers"), ("tokenizers", "tokenizers"), ("huggingface_hub", "huggingface_hub")):
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    scan = hub.scan_cache()
    source = hub.token_source()
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "devices": _probe_devices() if probe_devices else None,
        "cache": {"dir": str(hub.cache_dir()), "models": len(hub.cached_models(scan)), "size_on_disk": scan.size_on_disk if scan else 0},
        "offline": hub.is_offline(),
        "endpoint": mask_url(constants.ENDPOINT),
        "proxies": {var: mask_url(os.environ[var]) for var in PROXY_VARS if os.environ.get(var)},
        "token": {"configured": source is not None, "source": source},
    }


def mask_url(url: str) -> str:
    """url with any credentials in it replaced by ***: `https://user:pass@host/x` -> `https://***@host/x`;
    also `user:pass@host:3128` (a proxy given without a scheme). Everything after the scheme up to the
    LAST @ is masked, so a password holding @, /, ? or # is hidden whole; an @ later in the URL (rare in
    an endpoint or a proxy) hides more than needed, never less."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    masked = url if at < 0 else f"{scheme}{sep}***{rest[at:]}"
    return mask_query(masked)


SECRET_QUERY = ("token", "access_token", "api_key", "apikey", "key", "password", "pass", "secret", "sig", "signature", "auth")


def mask_query(url: str) -> str:
    """Query parameters that carry secrets (`?token=...`, `&api_key=...`) keep their name, not their value."""
    import re

    pattern = r"([?&;](?:%s)=)[^&;#]*" % "|".join(SECRET_QUERY)
    return re.sub(pattern, r"\1***", url, flags=re.IGNORECASE)


def _probe_devices() -> dict[str, Any]:
    """torch answers in a child process: this one stays light, and a hung driver costs a time-out, not a hang."""
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-c", DEVICE_PROBE], capture_output=True, text=True, timeout=DEVICE_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"the device probe took over {DEVICE_PROBE_TIMEOUT_S} s"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"the device probe exited with {done.returncode}"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "the device probe printed no answer"}


def _devices_text(devices: dict[str, Any] | None) -> str:
    if devices is None:
        return "not probed (--no-devices)"
    if "error" in devices:
        return f"unknown: {devices['error']}"
    from tfx import hub

    parts = ["cpu"] + [f"{d['device']} {d['name']} ({hub.format_size(d['memory_bytes'])})" for d in devices["cuda"]]
    parts.append("mps: " + ("available" if devices["mps"] else "no"))
    return "; ".join(parts)
