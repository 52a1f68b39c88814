"""What `tfx models` lists: tfx's catalogue with each model's cache state, and every cached model outside it,
with the family and tasks read from its config.json (registry.family_from_config, the heads in
registry.TASK_TABLE) and its parameter count from the safetensors headers. Reads small files only: no
torch, no transformers."""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path
from typing import Any

from tfx import registry
from tfx.hub.cache import cached_snapshot, find_cached
from tfx.hub.manage import cached_models, matching_cached
from tfx.hub.settings import format_size, read_small_file

CONFIG_LIMIT = 4 << 20
HEADER_LIMIT = 64 << 20  # a safetensors header (tensor names, dtypes, shapes) is far smaller
INDEX_LIMIT = 16 << 20


def model_entries(cached_only: bool = False) -> list[dict[str, Any]]:
    """The catalogue's models (each marked cached or not), then the cached models it does not name."""
    cached = cached_models()
    entries = [e for e in catalogue_entries(cached) if e["cached"] or not cached_only]
    return entries + uncatalogued_entries(cached)


def catalogue_entries(cached) -> list[dict[str, Any]]:
    entries = []
    for m in registry.MODELS:
        found = find_cached(m.name)
        size = sum(c.size for c in matching_cached(m.name, cached)) if found else 0
        entries.append(
            {
                "name": m.name, "repo_id": m.repo_id, "family": m.family, "tasks": list(m.tasks), "params": m.params,
                "about": m.about, "default_for": [t.name for t in registry.TASK_TABLE if t.default_model == m.name],
                "cached": found is not None, "size_on_disk": size, "size_on_disk_str": format_size(size) if found else "",
                "catalogued": True,
            }
        )  # fmt: skip
    return entries


def uncatalogued_entries(cached) -> list[dict[str, Any]]:
    """Cached models tfx's catalogue does not name, each with a usable snapshot (config and weights)."""
    entries = []
    for m in cached:
        if registry.lookup(m.repo_id) is not None:
            continue
        snapshot = cached_snapshot(m.repo_id)
        config = read_config(snapshot) if snapshot is not None else None
        if config is None:
            continue  # not a model tfx can run (no usable snapshot); `tfx cache ls` still lists it
        archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
        entries.append(
            {
                "name": m.repo_id, "repo_id": m.repo_id, "family": registry.family_from_config(config),
                "tasks": list(tasks_of(config, snapshot)), "params": params_of(snapshot),
                "about": f"in the cache: {archs[0] if archs else config.get('model_type') or 'a transformers model'}",
                "default_for": [], "cached": True, "size_on_disk": m.size, "size_on_disk_str": format_size(m.size),
                "catalogued": False,
            }
        )  # fmt: skip
    return entries


def read_config(snapshot: Path) -> dict[str, Any] | None:
    text = read_small_file(snapshot / "config.json", CONFIG_LIMIT)
    try:
        config = json.loads(text) if text else None
    except ValueError:
        return None
    return config if isinstance(config, dict) else None


def tasks_of(config: dict[str, Any], snapshot: Path) -> tuple[str, ...]:
    """The tasks a model's head can do: a fine-tuned head's own task (classify, ner, qa); a
    sentence-transformers model's embed and rank (a cross-encoder's rank); else its family's tasks that
    need no fine-tuned head (generate for a decoder, fill-mask for an encoder, translate/summarize/generate
    for an encoder-decoder)."""
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    headed = tuple(t.name for t in registry.TASK_TABLE if t.head and any(a.endswith(t.head) for a in archs))
    if (snapshot / "modules.json").is_file():
        return ("rank",) if "classify" in headed else ("embed", "rank")
    if headed:
        return headed
    family = registry.family_from_config(config)
    model_type = config.get("model_type", "") if isinstance(config.get("model_type"), str) else ""
    return tuple(t for t in registry.tasks_for(family, model_type) if registry.task_info(t).head is None and t not in ("embed", "rank"))


def params_of(snapshot: Path) -> int:
    """Parameters counted from the safetensors headers (one file, or the shards its index names); 0 if unknown."""
    files = [snapshot / "model.safetensors"]
    if not files[0].is_file():
        text = read_small_file(snapshot / "model.safetensors.index.json", INDEX_LIMIT)
        try:
            shards = sorted(set(json.loads(text)["weight_map"].values())) if text else []
        except (ValueError, KeyError, TypeError, AttributeError):
            return 0
        files = [snapshot / s for s in shards if isinstance(s, str) and "/" not in s]
    total = 0
    for path in files:
        count = _tensor_elements(path)
        if count is None:
            return 0
        total += count
    return total


def _tensor_elements(path: Path) -> int | None:
    """The safetensors format: 8 bytes (little-endian header length), then a JSON header of each tensor's shape."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device must not hang a listing
            return None
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > HEADER_LIMIT:
                return None
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, tensor in header.items() if isinstance(header, dict) else ():
        if name == "__metadata__" or not isinstance(tensor, dict):
            continue
        n = 1
        for dim in tensor.get("shape") or []:
            n *= int(dim)
        total += n
    return total
