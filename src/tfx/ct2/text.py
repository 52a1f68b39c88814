"""Tokenizers for the ct2 backend without transformers: `tokenizers` on the model's tokenizer.json, or the
sentencepiece models and vocab.json of a Marian model. The part of transformers' tokenizer interface the
tasks use (call -> input_ids, decode, get_vocab, the special tokens), giving AutoTokenizer's ids and text for
the models the backend runs (checked in tests/test_ct2.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfx.io import read_json

_NAMED = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# What transformers' tokenizer classes use when tokenizer_config.json names none.
_CLASS_DEFAULTS = {
    "t5": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "marian": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
}


def _content(token: Any) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


class BaseTokenizer:
    padding_side = "right"

    def __init__(self, path: Path, model_type: str, vocab: dict[str, int]):
        config = read_json(path / "tokenizer_config.json")
        self._vocab = vocab
        self._ids = {i: t for t, i in vocab.items()}
        names = dict(_CLASS_DEFAULTS.get(model_type, {}))
        names.update({k: _content(config[k]) for k in _NAMED if config.get(k) is not None})
        for key in _NAMED:
            setattr(self, key, names.get(key))
        extras = [_content(t) for t in (config.get("additional_special_tokens") or config.get("extra_special_tokens") or [])]
        decoder = config.get("added_tokens_decoder") or {}
        extras += [_content(t) for t in decoder.values() if isinstance(t, dict) and t.get("special")]
        self._special = {t for t in [*names.values(), *extras] if t}
        limit = config.get("model_max_length")
        self.model_max_length = limit if isinstance(limit, int) else None

    @property
    def all_special_ids(self) -> list[int]:
        return sorted({self._vocab[t] for t in self._special if t in self._vocab})

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self._vocab.get(token)

    @property
    def pad_token_id(self) -> int | None:
        return self.token_id(self.pad_token)

    @property
    def eos_token_id(self) -> int | None:
        return self.token_id(self.eos_token)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self._ids.get(i, self.unk_token or "") for i in ids]


class JsonTokenizer(BaseTokenizer):
    """tokenizer.json as saved, through `tokenizers`; T5 sources end with </s> whatever the file's template."""

    def __init__(self, path: Path, model_type: str):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()
        super().__init__(path, model_type, self._tok.get_vocab(with_added_tokens=True))
        for added in self._tok.get_added_tokens_decoder().values():
            if added.special:
                self._special.add(added.content)
        self._close = self.eos_token_id if model_type in ("t5", "mt5") else None

    def __call__(self, texts: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        single = isinstance(texts, str)
        rows = [e.ids for e in self._tok.encode_batch([texts] if single else texts, add_special_tokens=add_special_tokens)]
        if add_special_tokens and self._close is not None:
            rows = [r if r and r[-1] == self._close else [*r, self._close] for r in rows]
        return {"input_ids": rows[0] if single else rows}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)


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


def load(path: Path, model_type: str) -> BaseTokenizer:
    """The tokenizer for a model directory; ValueError where none of these reproduces transformers'."""
    if model_type == "marian":
        return MarianTokenizer(path)
    if (path / "tokenizer.json").is_file():
        return JsonTokenizer(path, model_type)
    raise ValueError("no tokenizer.json")
