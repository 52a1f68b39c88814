"""Greedy generation on the fast GPT-2 path for the generate task: which settings it takes, the length
budget generate() would give, left padding and streaming. Everything else stays with transformers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Settings under which generate() decodes greedily, one sequence per prompt: the fast path's case.
_PLAIN = {"max_new_tokens", "max_length", "do_sample", "num_beams", "num_return_sequences", "temperature", "top_k", "top_p", "pad_token_id"}


class FastPath:
    def __init__(self, decoder, tokenizer, generation_defaults: dict[str, Any], config: dict[str, Any]):
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.defaults = generation_defaults
        self.config = config
        # Asked after every token while set (the server's cancellation, serve.cancel): True ends the generation.
        self.stop_when: Callable[[], bool] | None = None

    @staticmethod
    def takes(kwargs: dict[str, Any]) -> bool:
        return (
            set(kwargs) <= _PLAIN
            and not kwargs.get("do_sample")
            and (kwargs.get("num_beams") or 1) == 1
            and (kwargs.get("num_return_sequences") or 1) == 1
        )

    def budget(self, kwargs: dict[str, Any], width: int) -> int | None:
        """How many tokens generate() would add to a batch `width` tokens wide."""
        if "max_new_tokens" in kwargs:
            return kwargs["max_new_tokens"]
        if "max_length" in kwargs:
            return kwargs["max_length"] - width
        if self.defaults.get("max_new_tokens") is not None:
            return self.defaults["max_new_tokens"]
        return (self.defaults.get("max_length") or 20) - width

    def eos_ids(self) -> list[int]:
        eos = (self.defaults or self.config).get("eos_token_id")
        return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)

    def generate(self, ids: list[list[int]], kwargs: dict[str, Any], on_text: Callable[[str], None] | None = None):
        """[B, T + n] sequences for left-padded prompts, or None when the length budget is one it leaves to
        transformers (a negative or over-long budget: transformers decides what to say)."""
        import torch

        pad = kwargs.get("pad_token_id")
        width = max(len(row) for row in ids)
        budget = self.budget(kwargs, width)
        if budget is None or budget < 1 or width + budget > self.decoder.n_positions:
            return None
        input_ids = torch.full((len(ids), width), pad if pad is not None else 0, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
        streamer = None
        if on_text is not None and len(ids) == 1:
            from tfx.tokens import TextStream

            streamer = TextStream(self.tokenizer, ids[0], on_text)
        out = self.decoder.generate(input_ids, mask, budget, self.eos_ids(), pad, streamer.put if streamer else None, self.stop_when)
        if streamer is not None:
            streamer.end()
        return out
