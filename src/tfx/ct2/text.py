"""Tokenizers for the ct2 backend without transformers: `tokenizers` on the model's tokenizer.json, or the
sentencepiece models and vocab.json of a Marian model. The part of transformers' tokenizer interface the
tasks use (call -> input_ids, decode, get_vocab, the special tokens), giving AutoTokenizer's ids and text for
the models the backend runs (checked in tests/test_ct2.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfx.io import read_json
from tfx.tokens import ShimTokenizer, VocabTokenizer

# What transformers' tokenizer classes use when tokenizer_config.json names none.
_CLASS_DEFAULTS = {
    "t5": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "marian": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
}


class BaseTokenizer(VocabTokenizer):
    """The shim's special tokens over a vocabulary dict (Marian's vocab.json); every token tokenizer_config.json
    marks special counts as special."""

    def __init__(self, path: Path, model_type: str, vocab: dict[str, int]):
        self._vocab = vocab
        self._ids = {i: t for t, i in vocab.items()}
        super().__init__(path, _CLASS_DEFAULTS.get(model_type))
        decoder = self.config.get("added_tokens_decoder") or {}
        self._special |= {t.get("content") for t in decoder.values() if isinstance(t, dict) and t.get("special") and t.get("content")}

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self._vocab.get(token)

    def id_token(self, token_id: int) -> str | None:
        return self._ids.get(token_id)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)


class JsonTokenizer(ShimTokenizer):
    """tokenizer.json as saved, through `tokenizers`; T5 sources end with </s> whatever the file's template."""

    def __init__(self, path: Path, model_type: str):
        super().__init__(path, _CLASS_DEFAULTS.get(model_type))
        self.add_special_from_files()
        self._close = self.eos_token_id if model_type in ("t5", "mt5") else None

    def encode_rows(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        rows = super().encode_rows(texts, add_special_tokens)
        if add_special_tokens and self._close is not None:
            rows = [r if r and r[-1] == self._close else [*r, self._close] for r in rows]
        return rows


class MarianTokenizer(BaseTokenizer):
    """transformers' MarianTokenizer: a >>lang<< code split off, source.spm pieces looked up in vocab.json
    (unknown pieces: <unk>), </s> appended; decoding joins the target.spm pieces."""

    def __init__(self, path: Path, model_type: str = "marian"):
        import sentencepiece

        vocab = read_json(path / "vocab.json")
        if not isinstance(vocab, dict) or not vocab:
            raise ValueError("no vocab.json")
        config = read_json(path / "tokenizer_config.json")
        if config.get("separate_vocabs"):
            raise ValueError("separate source and target vocabularies")
        super().__init__(path, model_type, {str(k): int(v) for k, v in vocab.items()})
        self._source = sentencepiece.SentencePieceProcessor(model_file=str(path / "source.spm"))
        self._target = sentencepiece.SentencePieceProcessor(model_file=str(path / "target.spm"))

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        code = []
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            code, text = [text[: end + 2]], text[end + 2 :]
        unk = self._vocab[self.unk_token]
        ids = [self._vocab.get(p, unk) for p in code + self._source.encode(text, out_type=str)]
        return [*ids, self._vocab[self.eos_token]] if add_special_tokens else ids

    def __call__(self, texts: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": self._encode(texts, add_special_tokens)}
        return {"input_ids": [self._encode(t, add_special_tokens) for t in texts]}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        out, pieces = "", []
        for token in self.convert_ids_to_tokens(ids):
            if token in self._special:
                if not skip_special_tokens:
                    out += self._target.decode_pieces(pieces) + token + " "
                    pieces = []
                continue
            pieces.append(token)
        out += self._target.decode_pieces(pieces)
        return out.replace("\u2581", " ").strip()


def load(path: Path, model_type: str) -> VocabTokenizer:
    """The tokenizer for a model directory; ValueError where none of these reproduces transformers'."""
    if model_type == "marian":
        return MarianTokenizer(path)
    if (path / "tokenizer.json").is_file():
        return JsonTokenizer(path, model_type)
    raise ValueError("no tokenizer.json")
