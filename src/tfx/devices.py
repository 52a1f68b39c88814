"""Which device to run on (auto | cpu | cuda | cuda:N | mps) and the dtype that is safe and fast there."""

from __future__ import annotations

import os
import re

from tfx.errors import TfxError, UsageError

DTYPES = ("auto", "float32", "float16", "bfloat16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def prepare_env() -> None:
    """Must run before torch is imported: ops MPS lacks fall back to the CPU instead of failing."""
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")


def check_device_syntax(device: str) -> str:
    device = device.strip().lower()
    if not _DEVICE.match(device):
        raise UsageError(f"unknown device '{device}'.", "Use auto, cpu, cuda, cuda:N or mps.")
    return device


def available_devices() -> list[str]:
    import torch  # heavy: only when a model is really needed

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return found


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(requested: str = "auto") -> str:
    """auto picks CUDA, then MPS, then CPU; an explicit device that is not there is an error."""
    import torch

    requested = check_device_syntax(requested)
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "mps" and _mps_available():
        return "mps"
    if requested.startswith("cuda") and torch.cuda.is_available():
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index < torch.cuda.device_count():
            return requested
    raise TfxError(
        f"device {requested} is not available here.",
        f"Devices on this machine: {', '.join(available_devices())}. Use --device auto to pick the best.",
    )


def pick_dtype(requested: str, device: str):
    """auto: float32 on CPU (half precision is ~100x slower on CPUs without native support), bfloat16 on
    CUDA where supported (float16 overflows in T5), float16 otherwise."""
    import torch

    if requested not in DTYPES:
        raise UsageError(f"unknown dtype '{requested}'.", f"Use one of: {', '.join(DTYPES)}.")
    if requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32
