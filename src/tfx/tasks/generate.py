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
        super().__init__(loaded, params)
        self.seq2seq = loaded.family == registry.ENCODER_DECODER
        tok = self.tokenizer
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token  # GPT-2 has no pad token; EOS is the usual stand-in
        if not self.seq2seq:
            tok.padding_side = "left"  # decoder-only batches must end where generation starts
        self.kwargs = user_generation_kwargs(params)
        if not has_length_setting(loaded, self.kwargs):
            self.kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
        if tok.pad_token_id is not None:
            self.kwargs["pad_token_id"] = tok.pad_token_id
        self.continuation_only = bool(params.get("continuation_only"))
        self.truncate = not params.get("no_truncate")
        self.on_text = params.get("on_text")
        self.context = None if self.seq2seq else context_length(loaded)
        if params.get("seed") is not None:
            from transformers import set_seed

            set_seed(params["seed"])

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
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kwargs = dict(self.kwargs)
        if self.on_text is not None and len(texts) == 1:
            kwargs["streamer"] = _callback_streamer(self.tokenizer, self.on_text)
        with torch.inference_mode():
            out = self.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        n = kwargs.get("num_return_sequences", 1)
        width = 0 if self.seq2seq else batch["input_ids"].shape[1]
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


def generate_text(result: dict[str, Any]) -> str:
    """Several sequences stay in one record, tab-separated."""
    return "\t".join(result["outputs"]) if "outputs" in result else result.get("output", "")


def _callback_streamer(tokenizer, on_text):
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            on_text(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
