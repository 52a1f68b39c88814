"""The tokenizer of an onnx copy without transformers: the `tokenizers.Tokenizer` that transformers itself
built for the model (saved at export as the copy's tokenizer.json, so every rebuild transformers 5 does from
a tokenizer class is already in it) and the facts the tasks read off transformers' tokenizer (pad ids,
padding side, input names, special tokens), recorded beside it. `__call__` takes the arguments the encoder
tasks pass (pairs, truncation with its strategy and stride, overflowing windows, padding to the longest,
offsets, special-tokens masks) and returns plain lists, set up on the backend exactly as transformers' fast
tokenizer sets it (set_truncation_and_padding, _convert_encoding), so qa's windows are transformers' windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# What export records from transformers' tokenizer (read back as attributes here).
FACTS = (
    "pad_token_id", "pad_token_type_id", "padding_side", "truncation_side", "model_input_names",
    "model_max_length", "unk_token_id", "unk_token", "mask_token", "mask_token_id", "cls_token_id",
    "sep_token_id", "all_special_ids", "all_special_tokens",
)  # fmt: skip


def facts_of(tokenizer) -> dict[str, Any]:
    """The facts of a transformers tokenizer (at export), JSON-ready."""
    out = {key: getattr(tokenizer, key, None) for key in FACTS}
    out["model_input_names"] = list(out["model_input_names"] or [])
    limit = out["model_max_length"]
    out["model_max_length"] = limit if isinstance(limit, int) and limit < 1 << 40 else None
    out["special_single"] = tokenizer.num_special_tokens_to_add(pair=False)
    out["special_pair"] = tokenizer.num_special_tokens_to_add(pair=True)
    return out


class Encoding(dict):
    """transformers' BatchEncoding as far as the tasks use it: a dict of lists, and sequence_ids(i)."""

    encodings: list = []

    def sequence_ids(self, index: int = 0) -> list[int | None]:
        return self.encodings[index].sequence_ids


class Tokenizer:
    is_fast = True

    def __init__(self, path: Path, facts: dict[str, Any]):
        from tokenizers import Tokenizer as Backend

        self.backend_tokenizer = Backend.from_file(str(path / "tokenizer.json"))
        self.backend_tokenizer.no_truncation()
        self.backend_tokenizer.no_padding()
        self._facts = facts
        for key in FACTS:
            setattr(self, key, facts.get(key))
        self.model_input_names = list(self.model_input_names or [])
        self._truncation: tuple | None = None
        self._padding = False

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._facts["special_pair" if pair else "special_single"]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.backend_tokenizer.id_to_token(int(i)) for i in ids]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend_tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def _truncate(self, truncation: Any, max_length: int | None, stride: int = 0) -> None:
        """The backend's truncation as transformers sets it for these arguments (set only when it changes)."""
        if truncation in (None, False, "do_not_truncate") or max_length is None:
            wanted = None
        else:
            strategy = "longest_first" if truncation is True else str(truncation)
            wanted = (max_length, stride, strategy, self.truncation_side or "right")
        if wanted == self._truncation:
            return
        if wanted is None:
            self.backend_tokenizer.no_truncation()
        else:
            self.backend_tokenizer.enable_truncation(wanted[0], stride=wanted[1], strategy=wanted[2], direction=wanted[3])
        self._truncation = wanted

    def _pad(self, padding: Any) -> None:
        """padding=True (or "longest"): the backend pads a batch to its longest, as transformers asks it to."""
        wanted = padding in (True, "longest")
        if wanted == self._padding:
            return
        if wanted:
            pad_id = self.pad_token_id or 0
            self.backend_tokenizer.enable_padding(direction=self.padding_side or "right", pad_id=pad_id, pad_type_id=self.pad_token_type_id or 0,
                                                  pad_token=self.backend_tokenizer.id_to_token(pad_id) or "[PAD]")  # fmt: skip
        else:
            self.backend_tokenizer.no_padding()
        self._padding = wanted

    def __call__(self, text, text_pair=None, add_special_tokens: bool = True, truncation: Any = None, max_length: int | None = None,
                 stride: int = 0, padding: Any = False, return_overflowing_tokens: bool = False, return_offsets_mapping: bool = False,
                 return_special_tokens_mask: bool = False, **_: Any) -> Encoding:  # fmt: skip
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        pairs = None if text_pair is None else ([text_pair] if isinstance(text_pair, str) else list(text_pair))
        if truncation and max_length is None:
            max_length = self.model_max_length
        self._truncate(truncation, max_length, stride)
        self._pad(padding)
        inputs = texts if pairs is None else list(zip(texts, pairs))
        encoded = self.backend_tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens)
        mapping = None
        if return_overflowing_tokens:  # each input's windows in order: the encoding, then its overflowing ones
            mapping = [i for i, e in enumerate(encoded) for _ in range(1 + len(e.overflowing))]
            encoded = [w for e in encoded for w in (e, *e.overflowing)]
        out = Encoding(input_ids=[e.ids for e in encoded])
        if "token_type_ids" in self.model_input_names:
            out["token_type_ids"] = [e.type_ids for e in encoded]
        out["attention_mask"] = [e.attention_mask for e in encoded]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encoded]
        if return_offsets_mapping:
            out["offset_mapping"] = [list(e.offsets) for e in encoded]
        if mapping is not None:
            out["overflow_to_sample_mapping"] = mapping
        out.encodings = encoded
        if single and mapping is None:
            one = Encoding({k: v[0] for k, v in out.items()})
            one.encodings = encoded
            return one
        return out
