"""--json / --json-schema for the generate task: constrained decoding with xgrammar (the grammar library vLLM,
SGLang and TensorRT-LLM use). The schema is compiled once per (tokenizer, schema) against the model's
vocabulary; `GrammarMask` is the logits processor model.generate takes, one grammar matcher per row (batches,
-n sampling). Whitespace between JSON tokens is fixed (xgrammar's any_whitespace=False: ", " and ": "), so a
model cannot run on in whitespace; the end-of-sequence token is allowed only where the JSON is complete.
Needs `pip install 'tfx-cli[structured]'` (xgrammar)."""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from typing import Any

from tfx.errors import UsageError
from tfx.settings import GenerateSettings, SettingError

ANY_OBJECT = '{"type": "object"}'  # --json: any object (strict_mode off: any properties)
GRAMMARS_PER_TOKENIZER = 64  # compiled schemas kept per tokenizer (least recently used dropped)


def require():
    try:
        import xgrammar
    except ImportError:
        raise UsageError("--json and --json-schema need xgrammar, which is not installed.", "pip install 'tfx-cli[structured]'") from None
    return xgrammar


def wanted(settings: GenerateSettings) -> tuple[str, bool] | None:
    """(schema text, strict) for these settings, or None when no JSON is asked."""
    if settings.json_schema is not None:
        return settings.json_schema, True
    if settings.json_object:
        return ANY_OBJECT, False
    return None


def _reason(exc: Exception) -> str:
    """xgrammar's message without its "[time] file.cc:line:" prefix, on one line."""
    text = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", str(exc).strip())
    return " ".join(text.split()) or type(exc).__name__


def check_schema(settings: GenerateSettings) -> None:
    """A SettingError naming --json-schema (json_schema on the server) where xgrammar cannot follow the
    schema; needs no model or tokenizer. The server can call it before anything loads."""
    want = wanted(settings)
    if want is None or not want[1]:
        return
    why = schema_problem(want[0])
    if why is not None:
        raise SettingError(GenerateSettings, "{json_schema} is a schema tfx cannot follow: {why}.", "Use the JSON Schema subset of OpenAI's structured outputs (objects, arrays, strings, numbers, enums, $defs).", why=why)


def schema_problem(schema: str) -> str | None:
    """Why xgrammar cannot follow this JSON Schema (strict), in one line, or None where it can: check_schema's
    test, and the server's (response_format and forced tool calls, each naming its own field)."""
    xgr = require()
    try:
        xgr.Grammar.from_json_schema(schema, any_whitespace=False, strict_mode=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        return _reason(exc)
    return None


class _Compilers:
    """One xgrammar GrammarCompiler per tokenizer (weakly held) and its compiled schemas."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_tokenizer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def compiled(self, tokenizer, vocab_size: int, stop_ids: list[int], schema: str, strict: bool):
        xgr = require()
        with self._lock:
            entry = self._by_tokenizer.get(tokenizer)
            if entry is None or entry[0] != (vocab_size, tuple(stop_ids)):
                info = tokenizer_info(xgr, tokenizer, vocab_size, list(stop_ids))
                entry = ((vocab_size, tuple(stop_ids)), xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False), OrderedDict())
                self._by_tokenizer[tokenizer] = entry
            _, compiler, grammars = entry
            key = (schema, strict)
            grammar = grammars.get(key)
            if grammar is None:
                try:
                    grammar = compiler.compile_json_schema(schema, any_whitespace=False, strict_mode=strict)
                except (RuntimeError, ValueError, TypeError) as exc:
                    raise SettingError(GenerateSettings, "{json_schema} is a schema tfx cannot follow: {why}.", "Use the JSON Schema subset of OpenAI's structured outputs.", why=_reason(exc)) from None
                grammars[key] = grammar
                while len(grammars) > GRAMMARS_PER_TOKENIZER:
                    grammars.popitem(last=False)
            grammars.move_to_end(key)
            return grammar

    def size(self, tokenizer) -> int:
        entry = self._by_tokenizer.get(tokenizer)
        return 0 if entry is None else len(entry[2])


COMPILERS = _Compilers()


def tokenizer_info(xgr, tokenizer, vocab_size: int, stop_ids: list[int]):
    """xgrammar's view of the vocabulary: its own reading of a transformers tokenizer where that gives each
    token's bytes as the tokenizer decodes them (tfx.tasks.logprobs.TokenPieces); else (it reads T5's
    SentencePiece vocabulary without byte fallback as raw text, "\u2581" and all) the bytes tfx reads, special
    tokens empty (xgrammar never allows those)."""
    from tfx.tasks.logprobs import TokenPieces

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
    pieces, special, size = TokenPieces(tokenizer), set(tokenizer.all_special_ids), min(vocab_size, len(tokenizer))
    theirs = info.decoded_vocab
    if all(theirs[i] == pieces.bytes_of(i) for i in range(size) if i not in special):
        return info
    vocab = [b"" if i in special or i >= size else pieces.bytes_of(i) for i in range(vocab_size)]
    return xgr.TokenizerInfo(vocab, xgr.VocabType.RAW, vocab_size=vocab_size, stop_token_ids=stop_ids)


class Constraint:
    """The compiled grammar of one generate task: `mask()` makes the logits processor for one model.generate
    call, `finished(...)` tells afterwards whether each row's text is complete JSON."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids: list[int], settings: GenerateSettings):
        schema, strict = wanted(settings)  # type: ignore[misc]
        if not stop_ids:
            raise UsageError("this model has no end-of-sequence token, so a JSON constraint could never end.", "Use a model whose generation config sets eos_token_id.")
        self.grammar = COMPILERS.compiled(tokenizer, vocab_size, stop_ids, schema, strict)
        self.stop_ids = set(stop_ids)
        self.special = set(tokenizer.all_special_ids) - self.stop_ids  # a decoder's start token, padding

    def mask(self) -> GrammarMask:
        return GrammarMask(self.grammar)

    def complete(self, new_ids: list[int]) -> bool:
        """Whether these generated ids (up to the end-of-sequence token) spell a complete JSON value."""
        xgr = require()
        matcher = xgr.GrammarMatcher(self.grammar)
        for token in new_ids:
            if token in self.stop_ids:
                break
            if token in self.special:
                continue
            if not matcher.accept_token(int(token)):
                return False
        return matcher.is_completed()


def _processor_base():
    from transformers import LogitsProcessor

    return LogitsProcessor


class GrammarMask(_processor_base()):
    """model.generate's logits processor: each row's scores outside its grammar's next tokens set to -inf.
    A row that ended (its end-of-sequence token, a stop string) is left alone: generate pads it. The scores
    are copied first: the first processor receives the raw logits, which output_logits and logprobs read."""

    def __init__(self, grammar) -> None:
        self.grammar = grammar
        self.matchers: list[Any] | None = None
        self.seen = 0  # the length of input_ids at the last call
        self.bitmask = None

    def __call__(self, input_ids, scores):
        xgr = require()
        if self.matchers is None:
            self.matchers = [xgr.GrammarMatcher(self.grammar) for _ in range(input_ids.shape[0])]
            self.live = [True] * len(self.matchers)
            self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), self.grammar.tokenizer_info.vocab_size)
        else:
            last = input_ids[:, -1].tolist()
            for i, matcher in enumerate(self.matchers):
                if self.live[i] and not matcher.is_terminated() and not matcher.accept_token(int(last[i])):
                    self.live[i] = False  # padding after a stop string ended the row
        self.seen = input_ids.shape[1]
        rows = [i for i, m in enumerate(self.matchers) if self.live[i] and not m.is_terminated()]
        if not rows:
            return scores
        for i in rows:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)
        scores = scores.clone()
        device = scores.device
        cpu = scores if device.type in ("cpu", "cuda") else scores.cpu()
        xgr.apply_token_bitmask_inplace(cpu, self.bitmask.to(cpu.device), indices=rows)
        return cpu if cpu is scores else cpu.to(device)
