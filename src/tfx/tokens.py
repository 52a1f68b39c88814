"""Tokens without transformers: the one tokenizer shim (`ShimTokenizer`, the part of transformers' tokenizer
interface the tasks use, over a `tokenizers.Tokenizer` read from tokenizer.json; `VocabTokenizer`, its
special-token and vocabulary half, for tokenizers of other kinds such as Marian's sentencepiece pair) and the
one streaming detokenizer (`TextStream`) for every streamed generation: the CLI's, the fast GPT-2 path's,
CTranslate2's, --logprobs chunks and the server's continuous batching.

The streaming contract, the same for CLI and server streams: text is handed on per token, as soon as it is
complete. A piece never holds half a UTF-8 character (a token that ends inside one waits for the rest) and
never text that a later token would change; the pieces of one generation, `finish()`'s included, concatenate
to exactly the text the result holds: `decode(prompt + new)[len(decode(prompt)):]` for a continuation
(`decode(new)` without a prompt), special tokens skipped. Per token rather than held to word ends (what
transformers' TextStreamer does for a terminal) because that is what OpenAI-style servers (vLLM, TGI, the
OpenAI API) send, it is the lowest latency for the reader, and one rule for every stream means a CLI stream
and a server stream of one generation carry the same pieces.

How: tokenizers' own `tokenizers.decoders.DecodeStream` (Rust; the prefix/read-offset algorithm over a
window of the last tokens, prefilled with the prompt's last ones) wherever the tokenizer's decode *is* its
`tokenizers.Tokenizer`'s decode (these shims, transformers 5's TokenizersBackend without its WordPiece
clean-up); the same algorithm in Python over the tokenizer's own `decode` for anything else (sentencepiece-
only Python tokenizers, a clean-up that can join a space to the next word: then text after the last space
waits for the next token). The window starts with the prompt's last tokens that have text (skipped special
tokens give a decoder no context). One limit, the tokenizer's own: byte-fallback pieces (<0xNN>) decode a run
at a time, and a run holding an invalid byte decodes wholly to U+FFFD, so a stray byte after a finished
character makes decode() rewrite a character that was already sent (models do not produce such runs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tfx.io import read_json

NAMED = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def content(token: Any) -> str | None:
    """A special token's text, whether tokenizer_config.json spells it as a string or an AddedToken dict."""
    return token.get("content") if isinstance(token, dict) else token


def _id_list(ids) -> list[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [int(i) for i in ([ids] if isinstance(ids, int) else ids)]


class VocabTokenizer:
    """Special tokens (names from tokenizer_config.json over the class's `defaults`, a config's null keeping
    the default; extra special tokens), their ids, the vocabulary and id -> token, over `token_id` and
    `id_token`, which a subclass answers from its vocabulary."""

    padding_side = "right"

    def __init__(self, path: Path, defaults: dict[str, str] | None = None):
        config = read_json(path / "tokenizer_config.json")
        self.config = config
        names = dict(defaults or {})
        names.update({k: content(config[k]) for k in NAMED if config.get(k) is not None})
        for key in NAMED:
            setattr(self, key, names.get(key))
        extras = [content(t) for t in (config.get("additional_special_tokens") or config.get("extra_special_tokens") or [])]
        self._special = {t for t in [*names.values(), *extras] if t}
        limit = config.get("model_max_length")
        self.model_max_length = limit if isinstance(limit, int) else None

    def token_id(self, token: str | None) -> int | None:
        raise NotImplementedError

    def id_token(self, token_id: int) -> str | None:
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        raise NotImplementedError

    @property
    def all_special_tokens(self) -> list[str]:
        """The special tokens in the vocabulary, by id (all_special_ids in the same order)."""
        return sorted((t for t in self._special if self.token_id(t) is not None), key=self.token_id)

    @property
    def all_special_ids(self) -> list[int]:
        return [self.token_id(t) for t in self.all_special_tokens]

    @property
    def pad_token_id(self) -> int | None:
        return self.token_id(self.pad_token)

    @property
    def eos_token_id(self) -> int | None:
        return self.token_id(self.eos_token)

    def convert_ids_to_tokens(self, ids):
        """Tokens for ids (one token for one id, as transformers answers); an unknown id reads as unk_token."""
        tokens = [self.id_token(i) or self.unk_token or "" for i in _id_list(ids)]
        return tokens[0] if isinstance(ids, int) else tokens


class ShimTokenizer(VocabTokenizer):
    """tokenizer.json through `tokenizers` (no truncation, no padding: the tasks cut and pad themselves);
    call -> {"input_ids"}, decode, as transformers' tokenizer does with the same pipeline. `backend_tokenizer`
    is transformers' name for the `tokenizers.Tokenizer`; `TextStream` streams through it."""

    decodes_as_backend = True  # decode() is backend_tokenizer.decode(): TextStream may use DecodeStream

    def __init__(self, path: Path, defaults: dict[str, str] | None = None, backend=None):
        if backend is None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        backend.no_truncation()
        backend.no_padding()
        self.backend_tokenizer = backend
        super().__init__(path, defaults)

    def add_special_from_files(self) -> None:
        """Count every token tokenizer.json or tokenizer_config.json marks special as special too."""
        decoder = self.config.get("added_tokens_decoder") or {}
        self._special |= {content(t) for t in decoder.values() if isinstance(t, dict) and t.get("special")}
        self._special |= {t.content for t in self.backend_tokenizer.get_added_tokens_decoder().values() if t.special}
        self._special.discard(None)

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.backend_tokenizer.token_to_id(token)

    def id_token(self, token_id: int) -> str | None:
        return self.backend_tokenizer.id_to_token(token_id)

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def encode_rows(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        return [e.ids for e in self.backend_tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)]

    def __call__(self, texts: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        single = isinstance(texts, str)
        rows = self.encode_rows([texts] if single else list(texts), add_special_tokens)
        return {"input_ids": rows[0] if single else rows}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend_tokenizer.decode(_id_list(ids), skip_special_tokens=skip_special_tokens)


def stream_backend(tokenizer):
    """The `tokenizers.Tokenizer` whose decode is exactly `tokenizer.decode` (DecodeStream can stream it), or
    None: these shims; transformers 5's TokenizersBackend unless its clean-up applies (a WordPiece or Unigram
    model with clean_up_tokenization_spaces; it skips BPE) or a subclass decodes its own way."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "decodes_as_backend", False):
        return backend
    mro = type(tokenizer).__mro__
    owner = next((c.__name__ for c in mro if "_decode" in vars(c)), None)
    outer = next((c.__name__ for c in mro if "decode" in vars(c)), None)
    if owner != "TokenizersBackend" or outer != "PreTrainedTokenizerBase":
        return None
    return None if _cleans_up(tokenizer) else backend


def _cleans_up(tokenizer) -> bool:
    """Whether transformers' decode applies clean_up_tokenization (" ." -> ".", " 's" -> "'s", ...)."""
    if not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return False
    backend = getattr(tokenizer, "backend_tokenizer", None)
    is_bpe = backend is not None and type(backend.model).__name__ == "BPE"
    return not is_bpe or bool(getattr(tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False))


class TextStream:
    """One generation's text, token by token (the contract is the module's docstring). `step(id)` returns the
    text that token completes or None; `finish()` the rest (what an unfinished character or a held word left).
    With `on_text`, `put(id)` and `end()` hand the pieces to it instead (a streamer's interface).
    prompt_ids: the ids the new ones continue (a decoder-only prompt), so the text is decoded as the result's.

    The window: tokens[prefix:read] were decoded into text already sent (the context a decoder needs to join
    the next token on: its leading space, a character's bytes), tokens[read:] not yet, except `extra` of
    their characters (a held word's start); DecodeStream keeps the same offsets inside (mirrored here for
    finish)."""

    CONTEXT = 6  # prompt tokens with text kept ahead of the new ones: enough for a decoder to join on

    def __init__(self, tokenizer, prompt_ids: Sequence[int] = (), on_text: Callable[[str], None] | None = None):
        self.tokenizer, self.on_text = tokenizer, on_text
        self._backend = stream_backend(tokenizer)
        self._cleanup = self._backend is None and _cleans_up(tokenizer)
        self._tokens = _context(_id_list(list(prompt_ids)), set(getattr(tokenizer, "all_special_ids", ()) or ()), self.CONTEXT)
        self._prefix, self._read, self._extra = 0, len(self._tokens), 0
        self._base = len(self._decode(self._tokens))
        self._stream = None
        if self._backend is not None:
            from tokenizers.decoders import DecodeStream

            self._stream = DecodeStream(ids=list(self._tokens), skip_special_tokens=True)

    def _decode(self, ids: list[int]) -> str:
        if self._backend is not None:
            return self._backend.decode(ids, skip_special_tokens=True)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def step(self, token_id: int) -> str | None:
        token_id = int(token_id)
        self._tokens.append(token_id)
        if self._stream is not None:
            try:
                piece = self._stream.step(self._backend, token_id)
            except Exception:  # noqa: BLE001 - DecodeStream's InvalidPrefix: a decoder that rewrote earlier text
                self._stream, self._backend = None, None
                return self._step_python()
            if piece:  # DecodeStream moved on: its window now starts where the last send's tokens began
                self._tokens, self._prefix, self._read, self._extra = self._tokens[self._read :], 0, len(self._tokens) - self._read, 0
                self._base = -1  # not needed until finish (computed there)
            return piece or None
        return self._step_python()

    def _step_python(self) -> str | None:
        if self._base < 0:
            self._base = len(self._decode(self._tokens[self._prefix : self._read]))
        text = self._decode(self._tokens[self._prefix :])
        if text.endswith("\ufffd"):  # a character that the next tokens finish
            return None
        done = self._base + self._extra
        settled = len(text)
        if self._cleanup and (space := text.rfind(" ")) >= done:
            settled = space  # the clean-up may yet join this space to what comes next
        piece = text[done:settled]
        if not piece:
            return None
        if settled == len(text):
            self._prefix, self._read, self._extra = self._read, len(self._tokens), 0
            self._tokens, self._read, self._prefix = self._tokens[self._prefix :], self._read - self._prefix, 0
            self._base = len(self._decode(self._tokens[: self._read]))
        else:
            self._extra += len(piece)
        return piece

    def finish(self) -> str:
        """The text the last tokens hold that no step has sent (may end with U+FFFD, as decode() then does)."""
        if self._read == len(self._tokens):
            return ""
        if self._base < 0:
            self._base = len(self._decode(self._tokens[self._prefix : self._read]))
        rest = self._decode(self._tokens[self._prefix :])[self._base + self._extra :]
        self._prefix, self._read, self._extra, self._base = self._read, len(self._tokens), 0, -1
        self._stream = None  # its window would send the rest again: go on (if at all) in Python
        return rest

    def put(self, token_id: int) -> None:
        piece = self.step(token_id)
        if piece and self.on_text is not None:
            self.on_text(piece)

    def end(self) -> None:
        rest = self.finish()
        if rest and self.on_text is not None:
            self.on_text(rest)


def _context(prompt: list[int], special: set[int], wanted: int) -> list[int]:
    """The prompt's end holding `wanted` tokens that are not special (skipped tokens give no context)."""
    start, seen = len(prompt), 0
    while start > 0 and seen < wanted:
        start -= 1
        seen += prompt[start] not in special
    return prompt[start:]
