"""GPT-2's tokenizer straight from `tokenizer.json` with the `tokenizers` library (importing it takes
milliseconds; transformers' tokenizer classes take seconds, because they import torch and the model zoo).

Whether it qualifies is judged by what the tokenizer is, not by its class name: a plain byte-level BPE
model (checked once loaded) and, depending on how transformers 5 reads the file,
- `GPT2Tokenizer` (or no class named): transformers rebuilds GPT-2's pipeline from the vocabulary (a
  ByteLevel pre-tokenizer and decoder, no normalizer, no template), and so does FastTokenizer;
- `TokenizersBackend` / `PreTrainedTokenizerFast` (what `save_pretrained` writes for a tokenizer made from
  a `tokenizers.Tokenizer`): transformers takes tokenizer.json as saved, so the file's own pipeline must be
  that same byte-level one (`pipeline_reason`).
Either way it encodes and decodes exactly as `AutoTokenizer` does; `unsupported_reason` and the ValueError
FastTokenizer raises name any setting that would make the two differ."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from tfx.io import read_json

# Classes for which transformers 5 rebuilds GPT-2's pipeline from the vocabulary and merges.
_GPT2_CLASSES = (None, "GPT2Tokenizer", "GPT2TokenizerFast")
# Classes for which it takes tokenizer.json as saved (PreTrainedTokenizerFast is TokenizersBackend's alias).
_AS_SAVED = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _content(token: Any) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


def unsupported_reason(path: Path) -> str | None:
    """None when the fast tokenizer gives transformers' exact ids and text for this model directory."""
    if not (path / "tokenizer.json").is_file():
        return "no tokenizer.json"
    config = read_json(path / "tokenizer_config.json")
    if config.get("tokenizer_class") not in (*_GPT2_CLASSES, *_AS_SAVED):
        return f"tokenizer class {config.get('tokenizer_class')}"  # a class with its own rules (CodeGen, ...)
    for key in ("add_bos_token", "add_eos_token", "add_prefix_space", "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"):
        if config.get(key):
            return f"tokenizer_config sets {key}"
    if config.get("errors", "replace") != "replace":
        return "tokenizer errors setting"
    return None  # the BPE model itself is checked once loaded (FastTokenizer raises ValueError)


def pipeline_reason(tok) -> str | None:
    """None when a tokenizer.json taken as saved is GPT-2's byte-level pipeline, the one FastTokenizer sets:
    no normalizer, a ByteLevel pre-tokenizer (GPT-2's regex, no prefix space), a ByteLevel decoder, and a
    post-processor that adds no tokens (none, ByteLevel's offsets trimming, or an empty template)."""
    from tokenizers import decoders, pre_tokenizers

    if tok.normalizer is not None:
        return f"has a normalizer ({type(tok.normalizer).__name__})"
    pre = tok.pre_tokenizer
    if not isinstance(pre, pre_tokenizers.ByteLevel):
        return f"pre-tokenizer is {type(pre).__name__ if pre is not None else 'missing'}, not ByteLevel"
    if pre.add_prefix_space or not pre.use_regex:
        return "ByteLevel pre-tokenizer adds a prefix space or drops GPT-2's regex"
    if not isinstance(tok.decoder, decoders.ByteLevel):
        return f"decoder is {type(tok.decoder).__name__ if tok.decoder is not None else 'missing'}, not ByteLevel"
    post = tok.post_processor
    if post is not None and (post.num_special_tokens_to_add(False) or post.num_special_tokens_to_add(True)):
        return "post-processor adds special tokens"
    return None


class FastTokenizer:
    """The part of transformers' tokenizer interface that `tfx generate` uses."""

    padding_side = "left"

    def __init__(self, path: Path):
        from tokenizers import Tokenizer, decoders, pre_tokenizers

        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        bpe = tok.model
        if type(bpe).__name__ != "BPE" or bpe.dropout or bpe.continuing_subword_prefix or bpe.end_of_word_suffix or getattr(bpe, "byte_fallback", False) or getattr(bpe, "ignore_merges", False):
            raise ValueError("tokenizer.json is not a plain byte-level BPE")
        config = read_json(path / "tokenizer_config.json")
        if config.get("tokenizer_class") in _AS_SAVED:
            reason = pipeline_reason(tok)
            if reason is not None:
                raise ValueError(f"tokenizer.json {reason}")
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = None
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        default = None if config.get("tokenizer_class") in _AS_SAVED else "<|endoftext|>"  # GPT2Tokenizer's defaults
        names = {key: _content(config.get(key, default if key != "pad_token" else None)) for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
        for extra in config.get("additional_special_tokens") or config.get("extra_special_tokens") or []:
            names[f"extra:{_content(extra)}"] = _content(extra)
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = (names[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token"))
        self.all_special_ids = sorted({i for i in (tok.token_to_id(t) for t in names.values() if t) if i is not None})
        self.model_max_length = config.get("model_max_length")

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    @property
    def eos_token_id(self) -> int | None:
        return self.token_id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self.token_id(self.pad_token)

    def __call__(self, texts: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": self._tok.encode(texts, add_special_tokens=add_special_tokens).ids}
        return {"input_ids": [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)]}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)


class TextStreamer:
    """transformers 5's TextStreamer(skip_prompt=True, skip_special_tokens=True), fed one token at a time:
    the same text, handed on in the same pieces."""

    def __init__(self, tokenizer: FastTokenizer, on_text):
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.cache: list[int] = []
        self.printed = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def put(self, token: int) -> None:
        self.cache.append(token)
        text = self._decode(self.cache)
        if text.endswith("\n"):
            printable = text[self.printed :]
            self.cache = self.cache[-1:]  # kept as context for the next line's leading space
            self.printed = len(self._decode(self.cache))
        elif text and _is_cjk(ord(text[-1])):
            printable = text[self.printed :]
            self.printed += len(printable)
        elif all(c.isspace() or unicodedata.category(c)[0] in "LMN" for c in text[self.printed :]):
            printable = text[self.printed :]
            self.printed += len(printable)
        else:
            printable = text[self.printed : text.rfind(" ") + 1]
            self.printed += len(printable)
        if printable:
            self.on_text(printable)

    def end(self) -> None:
        printable = self._decode(self.cache)[self.printed :] if self.cache else ""
        self.cache, self.printed = [], 0
        if printable:
            self.on_text(printable)


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )  # fmt: skip
