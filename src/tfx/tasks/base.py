"""What every task shares: the Task interface, context lengths, and generation settings built from only
what the user set."""

from __future__ import annotations

import logging
from typing import Any

from tfx.errors import RecordError, UsageError

log = logging.getLogger("tfx")

# transformers' fallback when neither the model nor the user sets a length: 20 tokens, prompt included,
# which cuts nearly every sentence short.
LIBRARY_FALLBACK_MAX_LENGTH = 20
GENERATION_KEYS = (
    "max_new_tokens",
    "max_length",
    "min_new_tokens",
    "num_return_sequences",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "num_beams",
    "repetition_penalty",
    "no_repeat_ngram_size",
)


class Task:
    """prepare -> forward -> plain results, for a batch of texts."""

    name = ""

    def __init__(self, loaded, params: dict[str, Any]):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        self.params = params

    def check(self, text: str) -> None:
        """Raise RecordError for an input this task cannot take."""
        if not text.strip():
            return

    def cost(self, text: str) -> int:
        """A cheap length estimate used to group similar inputs into one batch."""
        return len(text)

    def run(self, texts: list[str]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def default_batch_size(self) -> int:
        return 8 if self.device == "cpu" else 32

    def close(self) -> None:
        """Undo what the task did to the shared model (hooks), so the model can serve another task."""


def user_generation_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Only what the user set; everything else stays with the model's generation config."""
    return {k: params[k] for k in GENERATION_KEYS if params.get(k) is not None}


def validate_generation(params: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
    """Reject values generate() would refuse or silently misuse; defaults is the model's generation config."""
    defaults = defaults or {}
    if params.get("max_new_tokens") is not None and params.get("max_length") is not None:
        raise UsageError("--max-new-tokens and --max-length are two ways to say one thing.", "Give only one of them.")
    for key in ("max_new_tokens", "max_length", "num_return_sequences", "num_beams"):
        value = params.get(key)
        if value is not None and value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1 (got {value}).", "Pass a positive number.")
    if params.get("min_new_tokens") is not None and params["min_new_tokens"] < 0:
        raise UsageError("--min-new-tokens must be 0 or more.", "Pass a non-negative number.")
    sampling = params["do_sample"] if params.get("do_sample") is not None else bool(defaults.get("do_sample"))
    if sampling:
        temperature = params.get("temperature")
        if temperature is not None and temperature <= 0:
            raise UsageError(f"--temperature must be above 0 when sampling (got {temperature}).", "Use e.g. --temperature 0.7, or drop --do-sample for greedy decoding.")
    top_p = params.get("top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1] (got {top_p}).", "Use e.g. --top-p 0.95.")
    if params.get("top_k") is not None and params["top_k"] < 0:
        raise UsageError("--top-k must be 0 or more.", "Use e.g. --top-k 50.")
    if params.get("repetition_penalty") is not None and params["repetition_penalty"] <= 0:
        raise UsageError("--repetition-penalty must be above 0.", "1.0 means no penalty; try 1.2.")
    beams = params.get("num_beams") or defaults.get("num_beams") or 1
    n = params.get("num_return_sequences") or 1
    if not sampling and beams > 1 and n > beams:
        raise UsageError(f"-n {n} asks for more sequences than --num-beams {beams} can return.", f"Use --num-beams {n} or more, or --do-sample.")
    if not sampling and beams == 1 and n > 1:
        raise UsageError(f"-n {n} with greedy decoding would return {n} identical sequences.", f"Add --do-sample, or --num-beams {n}.")


def context_length(loaded) -> int | None:
    """How many positions the model can attend to, from its config; None when unbounded (T5)."""
    config = loaded.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def input_limit(loaded) -> int:
    """Longest input the encoder takes; tokenizers say 1e30 when they do not know."""
    limit = context_length(loaded)
    tokenizer_limit = getattr(loaded.tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
        limit = min(limit, tokenizer_limit) if limit else tokenizer_limit
    return limit or 512


def has_length_setting(loaded, kwargs: dict[str, Any]) -> bool:
    """True when the user, the model's generation_config.json or its task settings chose an output length."""
    if "max_new_tokens" in kwargs or "max_length" in kwargs:
        return True
    written = loaded.generation_defaults
    if written.get("max_new_tokens") is not None:
        return True
    return written.get("max_length") not in (None, LIBRARY_FALLBACK_MAX_LENGTH)


def too_long(what: str, n_tokens: int, limit: int) -> RecordError:
    return RecordError(f"input is {n_tokens} tokens, over the {what} limit of {limit} (--no-truncate was given)")
