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

from pathlib import Path

from tfx.io import read_json
from tfx.tokens import ShimTokenizer

# Classes for which transformers 5 rebuilds GPT-2's pipeline from the vocabulary and merges.
_GPT2_CLASSES = (None, "GPT2Tokenizer", "GPT2TokenizerFast")
# Classes for which it takes tokenizer.json as saved (PreTrainedTokenizerFast is TokenizersBackend's alias).
_AS_SAVED = ("TokenizersBackend", "PreTrainedTokenizerFast")


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


class FastTokenizer(ShimTokenizer):
    """GPT-2's byte-level tokenizer on the shim (tfx.tokens): the part of transformers' tokenizer interface
    that `tfx generate` uses, with the pipeline transformers 5 gives GPT-2."""

    padding_side = "left"

    def __init__(self, path: Path):
        from tokenizers import Tokenizer, decoders, pre_tokenizers

        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        bpe = tok.model
        if type(bpe).__name__ != "BPE" or bpe.dropout or bpe.continuing_subword_prefix or bpe.end_of_word_suffix or getattr(bpe, "byte_fallback", False) or getattr(bpe, "ignore_merges", False):
            raise ValueError("tokenizer.json is not a plain byte-level BPE")
        saved = read_json(path / "tokenizer_config.json").get("tokenizer_class") in _AS_SAVED
        if saved:
            reason = pipeline_reason(tok)
            if reason is not None:
                raise ValueError(f"tokenizer.json {reason}")
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = None
        defaults = None if saved else dict.fromkeys(("bos_token", "eos_token", "unk_token"), "<|endoftext|>")  # GPT2Tokenizer's
        super().__init__(path, defaults, backend=tok)
