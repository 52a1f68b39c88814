"""The tokenizer of an onnx copy without transformers: the `tokenizers.Tokenizer` that transformers itself
built for the model (saved at export as the copy's tokenizer.json, so every rebuild transformers 5 does from
a tokenizer class is already in it) and the facts the tasks read off transformers' tokenizer (pad ids,
padding side, input names, special tokens), recorded beside it. `__call__` takes the arguments the encoder
tasks pass (pairs, truncation, max_length, offsets, special-tokens masks) and returns plain lists."""

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
    """transformers' BatchEncoding as far as the tasks use it: a dict of lists."""


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

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._facts["special_pair" if pair else "special_single"]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.backend_tokenizer.id_to_token(int(i)) for i in ids]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend_tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def _truncate(self, truncation: Any, max_length: int | None) -> None:
        """The backend's truncation as transformers sets it for these arguments (set only when it changes)."""
        if truncation in (None, False, "do_not_truncate") or max_length is None:
            wanted = None
        else:
            strategy = "longest_first" if truncation is True else str(truncation)
            wanted = (max_length, strategy, self.truncation_side or "right")
        if wanted == self._truncation:
            return
        if wanted is None:
            self.backend_tokenizer.no_truncation()
        else:
            self.backend_tokenizer.enable_truncation(wanted[0], stride=0, strategy=wanted[1], direction=wanted[2])
        self._truncation = wanted

    def __call__(self, text, text_pair=None, add_special_tokens: bool = True, truncation: Any = None, max_length: int | None = None,
                 return_offsets_mapping: bool = False, return_special_tokens_mask: bool = False, **_: Any) -> Encoding:  # fmt: skip
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        pairs = None if text_pair is None else ([text_pair] if isinstance(text_pair, str) else list(text_pair))
        if truncation and max_length is None:
            max_length = self.model_max_length
        self._truncate(truncation, max_length)
        inputs = texts if pairs is None else list(zip(texts, pairs))
        encoded = self.backend_tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens)
        out = Encoding(input_ids=[e.ids for e in encoded])
        if "token_type_ids" in self.model_input_names:
            out["token_type_ids"] = [e.type_ids for e in encoded]
        out["attention_mask"] = [e.attention_mask for e in encoded]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encoded]
        if return_offsets_mapping:
            out["offset_mapping"] = [list(e.offsets) for e in encoded]
        if single:
            return Encoding({k: v[0] for k, v in out.items()})
        return out
