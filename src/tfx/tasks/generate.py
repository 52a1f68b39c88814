"""generate: continue prompts with a decoder-only model (or run text-to-text with an encoder-decoder).
Greedy decoding of GPT-2 models goes to the fast path (tfx.fast) where it gives transformers' result."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tfx import registry
from tfx.results import GenerateResult, Result, TextChunk
from tfx.spec import GenerateSettings
from tfx.tasks.base import Task, context_length, log, stream_from, too_long

# Used only when neither the user nor the model's generation_config.json sets a length.
DEFAULT_MAX_NEW_TOKENS = 50


class Generate(Task):
    name = "generate"
    batch_sizes = (32, 64)
    settings: GenerateSettings

    def __init__(self, loaded, settings: GenerateSettings):
        # loaded.model and loaded.tokenizer are touched only when transformers is needed: the fast path
        # must not import it.
        super().__init__(loaded, settings)
        self.seq2seq = loaded.family == registry.ENCODER_DECODER
        self.kwargs = settings.generate_kwargs()
        if not settings.sets_length(loaded.generation_defaults):
            self.kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
        fast = loaded.fast
        self.fast = fast if fast is not None and fast.takes(self.kwargs) else None
        self.tokenizer = self._setup_tokenizer(self.fast.tokenizer if self.fast is not None else loaded.tokenizer)
        self.truncate = not settings.no_truncate
        self.context = None if self.seq2seq else context_length(loaded.config)
        if settings.seed is not None:
            _set_seed(settings.seed, light=self.fast is not None)

    def _setup_tokenizer(self, tok):
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token  # GPT-2 has no pad token; EOS is the usual stand-in
        if not self.seq2seq:
            tok.padding_side = "left"  # decoder-only batches must end where generation starts
        if tok.pad_token_id is not None:
            self.kwargs["pad_token_id"] = tok.pad_token_id
        return tok

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

    def run(self, texts: list[str]) -> list[GenerateResult]:
        return self._run(texts)

    def stream(self, text: str) -> Iterator[TextChunk | Result]:
        if not self.settings.streamable(self.loaded.generation_defaults):
            yield from super().stream(text)
            return
        yield from stream_from(lambda on_text: self._run([text], on_text)[0])

    def _run(self, texts: list[str], on_text: Callable[[str], None] | None = None) -> list[GenerateResult]:
        import torch

        ids = self.tokenizer(texts)["input_ids"]
        limit = self._prompt_limit()
        cut = [False] * len(texts)
        if limit is not None:
            for i, row in enumerate(ids):
                if len(row) > limit:
                    log.warning("prompt %r is %d tokens; keeping its last %d to leave room for the new tokens", texts[i][:40], len(row), limit)
                    ids[i], cut[i] = row[-limit:], True
        if self.fast is not None:
            out = self.fast.generate(ids, self.kwargs, on_text)
            if out is not None:
                return self._results(texts, ids, out, max(len(r) for r in ids), 1, cut)
            # a budget the fast path does not handle: transformers decides, with its own tokenizer
            self.fast, self.tokenizer = None, self._setup_tokenizer(self.loaded.tokenizer)
            return self._run(texts, on_text)
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kwargs = dict(self.kwargs)
        if on_text is not None and len(texts) == 1:
            kwargs["streamer"] = _callback_streamer(self.tokenizer, on_text)
        with torch.inference_mode():
            out = self.loaded.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        width = 0 if self.seq2seq else batch["input_ids"].shape[1]
        return self._results(texts, ids, out, width, kwargs.get("num_return_sequences", 1), cut)

    def _results(self, texts, ids, out, width: int, n: int, cut: list[bool]) -> list[GenerateResult]:
        results = []
        for i, text in enumerate(texts):
            sequences = [self._decode(ids[i], row[width:].tolist(), text) for row in out[i * n : (i + 1) * n]]
            results.append(
                GenerateResult(
                    output=sequences[0][0],
                    outputs=[s[0] for s in sequences] if n > 1 else None,
                    generated_tokens=sum(s[1] for s in sequences),
                    truncated=cut[i],
                )
            )
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
        return (continuation if self.settings.continuation_only else prompt + continuation), count


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


def _callback_streamer(tokenizer, on_text):
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            on_text(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
