"""generate: continue prompts with a decoder-only model (or run text-to-text with an encoder-decoder)."""

from __future__ import annotations

from typing import Any

from tfx import registry
from tfx.tasks.base import Task, context_length, has_length_setting, log, too_long, user_generation_kwargs

# Used only when neither the user nor the model's generation_config.json sets a length.
DEFAULT_MAX_NEW_TOKENS = 50


class Generate(Task):
    name = "generate"

    def __init__(self, loaded, params: dict[str, Any]):
        # Not Task.__init__: it would touch loaded.model, and the fast path must not load transformers.
        self.loaded, self.params, self.device = loaded, params, loaded.device
        self.seq2seq = loaded.family == registry.ENCODER_DECODER
        self.kwargs = user_generation_kwargs(params)
        if not has_length_setting(loaded, self.kwargs):
            self.kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
        self.fast = getattr(loaded, "fast", None) if _greedy(self.kwargs) else None
        if self.fast is None:
            self._use_transformers()
        else:
            self.model, self.tokenizer = None, self.fast.tokenizer
            self._setup_tokenizer()
        self.continuation_only = bool(params.get("continuation_only"))
        self.truncate = not params.get("no_truncate")
        self.on_text = params.get("on_text")
        self.context = None if self.seq2seq else context_length(loaded)
        if params.get("seed") is not None:
            _set_seed(params["seed"], light=self.fast is not None)

    def _use_transformers(self) -> None:
        self.fast = None
        if hasattr(self.loaded, "drop_fast"):
            self.loaded.drop_fast()
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self._setup_tokenizer()

    def _setup_tokenizer(self) -> None:
        tok = self.tokenizer
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token  # GPT-2 has no pad token; EOS is the usual stand-in
        if not self.seq2seq:
            tok.padding_side = "left"  # decoder-only batches must end where generation starts
        if tok.pad_token_id is not None:
            self.kwargs["pad_token_id"] = tok.pad_token_id

    def _prompt_limit(self) -> int | None:
        """The most prompt tokens that leave room for the new ones inside the model's context."""
        if self.context is None:
            return None
        if "max_new_tokens" in self.kwargs:
            return max(self.context - self.kwargs["max_new_tokens"], 1)
        return max(self.context - 1, 1)

    def check(self, text: str) -> None:
        limit = self._prompt_limit()
        if not self.truncate and limit is not None:
            n = len(self.tokenizer(text)["input_ids"])
            if n > limit:
                raise too_long("prompt", n, limit)

    def run(self, texts: list[str]) -> list[dict[str, Any]]:
        import torch

        ids = self.tokenizer(texts)["input_ids"]
        limit = self._prompt_limit()
        if limit is not None:
            for i, row in enumerate(ids):
                if len(row) > limit:
                    log.warning("prompt %r is %d tokens; keeping its last %d to leave room for the new tokens", texts[i][:40], len(row), limit)
                    ids[i] = row[-limit:]
        if self.fast is not None:
            out = self._run_fast(ids, texts)
            if out is not None:
                return out
            self._use_transformers()  # a budget the fast path does not handle: transformers decides
            ids = self.tokenizer(texts)["input_ids"]
            if limit is not None:
                ids = [row[-limit:] for row in ids]
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kwargs = dict(self.kwargs)
        if self.on_text is not None and len(texts) == 1:
            kwargs["streamer"] = _callback_streamer(self.tokenizer, self.on_text)
        with torch.inference_mode():
            out = self.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        width = 0 if self.seq2seq else batch["input_ids"].shape[1]
        return self._results(texts, ids, out, width, kwargs.get("num_return_sequences", 1))

    def _run_fast(self, ids: list[list[int]], texts: list[str]) -> list[dict[str, Any]] | None:
        """Greedy decoding on tfx's own GPT-2 path; None when the length budget is one it leaves to transformers."""
        import torch

        decoder, pad = self.fast.decoder, self.kwargs.get("pad_token_id")
        width = max(len(row) for row in ids)
        budget = self._budget(width)
        if budget is None or budget < 1 or width + budget > decoder.n_positions:
            return None
        input_ids = torch.full((len(ids), width), pad if pad is not None else 0, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
        streamer = None
        if self.on_text is not None and len(texts) == 1:
            from tfx.fast.text import TextStreamer

            streamer = TextStreamer(self.tokenizer, self.on_text)
        out = decoder.generate(input_ids, mask, budget, self._eos_ids(), pad, streamer.put if streamer else None)
        if streamer is not None:
            streamer.end()
        return self._results(texts, ids, out, width, 1)

    def _budget(self, width: int) -> int | None:
        """How many tokens generate() would add to a batch `width` tokens wide."""
        if "max_new_tokens" in self.kwargs:
            return self.kwargs["max_new_tokens"]
        if "max_length" in self.kwargs:
            return self.kwargs["max_length"] - width
        written = self.loaded.generation_defaults
        if written.get("max_new_tokens") is not None:
            return written["max_new_tokens"]
        return (written.get("max_length") or 20) - width

    def _eos_ids(self) -> list[int]:
        written = self.loaded.generation_defaults or self.loaded.config
        eos = written.get("eos_token_id")
        return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)

    def _results(self, texts: list[str], ids: list[list[int]], out, width: int, n: int) -> list[dict[str, Any]]:
        results = []
        for i, text in enumerate(texts):
            sequences = [self._decode(ids[i], row[width:].tolist(), text) for row in out[i * n : (i + 1) * n]]
            result = {"output": sequences[0][0]}
            if n > 1:
                result["outputs"] = [s[0] for s in sequences]
            result["generated_tokens"] = sum(s[1] for s in sequences)
            results.append(result)
        return results

    def _decode(self, prompt_ids: list[int], new_ids: list[int], prompt: str) -> tuple[str, int]:
        special = set(self.tokenizer.all_special_ids)
        count = sum(1 for t in new_ids if t not in special)
        if self.seq2seq:
            return self.tokenizer.decode(new_ids, skip_special_tokens=True), count
        # Decode prompt and continuation together and cut the prompt's text off, so tokenizers that merge
        # across the boundary (leading spaces) still give the right continuation.
        skip = len(self.tokenizer.decode(prompt_ids, skip_special_tokens=True))
        continuation = self.tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)[skip:]
        return (continuation if self.continuation_only else prompt + continuation), count

    def default_batch_size(self) -> int:
        return 32 if self.device == "cpu" else 64


def _greedy(kwargs: dict[str, Any]) -> bool:
    """Settings under which generate() decodes greedily, one sequence per prompt: the fast path's case."""
    plain = {"max_new_tokens", "max_length", "do_sample", "num_beams", "num_return_sequences", "temperature", "top_k", "top_p"}
    return (
        set(kwargs) <= plain
        and not kwargs.get("do_sample")
        and (kwargs.get("num_beams") or 1) == 1
        and (kwargs.get("num_return_sequences") or 1) == 1
    )


def _set_seed(seed: int, light: bool) -> None:
    """transformers.set_seed's effect (python, numpy, torch), without importing transformers on the fast path."""
    if not light:
        from transformers import set_seed

        set_seed(seed)
        return
    import random

    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def generate_text(result: dict[str, Any]) -> str:
    """Several sequences stay in one record, tab-separated."""
    return "\t".join(result["outputs"]) if "outputs" in result else result.get("output", "")


def _callback_streamer(tokenizer, on_text):
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            on_text(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
