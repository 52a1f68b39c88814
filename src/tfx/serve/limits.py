"""What one request may ask of the server, checked on the event loop before any work is queued: the inputs,
the output lengths, the stop strings, the candidates per mask and the request budget (inputs x sequences x
new tokens, or inputs x masks x top_k). The checks read settings fields by name (getattr), so every task,
the new ones too, gets the same limits. A value over a cap is a 400 (serve.http.LimitError) naming the cap and
the server's option; a request over the inputs or the budget bound is a 413."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tfx import loading, registry
from tfx.serve.config import MAX_STOP_CHARS, MAX_STOPS
from tfx.serve.config import Settings as ServerSettings
from tfx.serve.http import LimitError
from tfx.serve.schemas import LENGTH_KEYS
from tfx.spec import Settings
from tfx.tasks.generate import DEFAULT_MAX_NEW_TOKENS

GENERIC_MASK = "[MASK]"  # what every fill-mask model takes (tasks.fill_mask rewrites it)


def check_lengths(settings: Settings, cap: int, names: dict[str, str] | None = None) -> None:
    for key in LENGTH_KEYS:
        value = getattr(settings, key, None)
        if value is not None and value > cap:
            name = (names or {}).get(key, key)
            raise LimitError(400, f"{name} is {value}, over this server's cap of {cap} (--max-tokens-cap)", "max_tokens_exceeded", name)


def check_inputs(count: int, limits: ServerSettings, param: str = "inputs") -> None:
    if count > limits.max_inputs:
        raise LimitError(413, f"{param} has {count} entries, over this server's limit of {limits.max_inputs} (--max-inputs)", "too_many_inputs", param)


def check_stops(stops: list[str]) -> None:
    """OpenAI's bound on the count; a bound on each length keeps transformers' stop-string tables small."""
    if len(stops) > MAX_STOPS:
        raise LimitError(400, f"stop takes at most {MAX_STOPS} strings (got {len(stops)})", "invalid_stop", "stop")
    for stop in stops:
        if len(stop) > MAX_STOP_CHARS:
            raise LimitError(400, f"each stop string is at most {MAX_STOP_CHARS} characters (got one of {len(stop)})", "invalid_stop", "stop")


def check_top_k(task: str, settings: Settings, limits: ServerSettings) -> None:
    """top_k of the tasks that list candidates (fill-mask, classify, ...); generate's top_k is a sampling
    setting and costs nothing."""
    top_k = getattr(settings, "top_k", None)
    if top_k is not None and not registry.task_info(task).generative and top_k > limits.max_top_k:
        raise LimitError(400, f"top_k is {top_k}, over this server's cap of {limits.max_top_k} (--max-top-k)", "top_k_exceeded", "top_k")
    labels = getattr(settings, "labels", None)  # zero-shot: one forward pass per input and label
    if labels and len(labels) > limits.max_top_k:
        raise LimitError(400, f"labels has {len(labels)} entries, over this server's cap of {limits.max_top_k} (--max-top-k)", "too_many_labels", "labels")


def check_budget(task: str, settings: Settings, texts: list[str], limits: ServerSettings, prepared: loading.Prepared) -> None:
    """The request's whole cost against --max-request-tokens, and masks per input against --max-masks."""
    if task == "fill-mask":
        masks = _mask_counter(prepared)
        counts = [masks(text) for text in texts]
        worst = max(counts, default=0)
        if worst > limits.max_masks:
            raise LimitError(400, f"an input has {worst} masks, over this server's cap of {limits.max_masks} per input (--max-masks)", "too_many_masks", "inputs")
        cost, what = sum(max(c, 1) for c in counts) * (getattr(settings, "top_k", None) or 1), "inputs x masks x top_k"
    elif registry.task_info(task).generative:
        sequences = max(getattr(settings, "num_return_sequences", None) or 1, settings.beams(prepared.generation_defaults) if hasattr(settings, "beams") else 1)
        cost, what = len(texts) * sequences * new_tokens(settings, prepared.generation_defaults), "inputs x sequences x new tokens"
    elif getattr(settings, "labels", None):
        cost, what = len(texts) * len(settings.labels), "inputs x labels"
    else:
        cost, what = len(texts) * (getattr(settings, "top_k", None) or 1), "inputs x top_k"
    if cost > limits.max_request_tokens:
        message = f"the request asks for {cost} ({what}), over this server's budget of {limits.max_request_tokens} per request (--max-request-tokens); send fewer inputs or ask for less"
        raise LimitError(413, message, "request_budget_exceeded", None)


def new_tokens(settings: Settings, defaults: dict[str, Any]) -> int:
    """The most tokens one sequence may get: what the user set, else the model's generation config, else
    the generate task's default."""
    for value in (getattr(settings, "max_new_tokens", None), getattr(settings, "max_length", None), defaults.get("max_new_tokens")):
        if isinstance(value, int) and value > 0:
            return value
    length = defaults.get("max_length")
    return length if isinstance(length, int) and length > 0 else DEFAULT_MAX_NEW_TOKENS


_MASK_TOKENS: dict[Path, str | None] = {}


def _mask_counter(prepared: loading.Prepared):
    """Counts [MASK] and the model's own mask token (from its tokenizer files, read once per model)."""
    path = prepared.resolved.path
    if path not in _MASK_TOKENS:
        token = None
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            value = loading.read_json(path / name).get("mask_token")
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str) and value:
                token = value
                break
        _MASK_TOKENS[path] = token
    forms = {GENERIC_MASK, _MASK_TOKENS[path] or "<mask>"}
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
    return lambda text: len(pattern.findall(text))
