"""--logprobs for the generate task: each generated token's log-probability, log_softmax of the model's raw logits
(before repetition penalties, the JSON grammar's mask, temperature, top-k and top-p: OpenAI's numbers for greedy
decoding, vLLM's default `raw_logprobs` for sampling), with its N most likely alternatives.

`Recorder` is a torch forward hook on the model (the logits of each decoding step, on the generating thread
only) and a transformers streamer (the token each step chose), so memory stays one step of logits wide, not
model.generate(output_logits=True)'s steps x batch x vocabulary, and a stream can carry them chunk by chunk.
Entries are plain dicts, as OpenAI's chat logprobs are spelt, plus the token id."""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from typing import Any

from transformers.generation.streamers import BaseStreamer


class Recorder(BaseStreamer):
    """Pass as model.generate's streamer inside `with recorder.attached(model):`. steps[t] = (chosen ids,
    their logprobs, top logprobs, top ids), one value per row of the batch. `on_step(step)` (streaming) is
    called after each step, `on_end()` when generation ends."""

    def __init__(self, top: int, on_step: Callable[[int], None] | None = None, on_end: Callable[[], None] | None = None):
        self.top = top
        self.on_step = on_step
        self.on_end = on_end  # called once generation ends (streaming: what the last tokens still hold)
        self.steps: list[tuple[list[int], list[float], list[list[float]], list[list[int]]]] = []
        self.prompt: list[int] | None = None  # the first put: the prompt (decoder-only) or the decoder's start ids
        self._pending: collections.deque = collections.deque()
        self._thread = None

    def attached(self, model):
        import contextlib

        @contextlib.contextmanager
        def hooked():
            self._thread = threading.get_ident()
            handle = model.register_forward_hook(self._hook)
            try:
                yield self
            finally:
                handle.remove()

        return hooked()

    def _hook(self, module, args, output) -> None:
        import torch

        if threading.get_ident() != self._thread:  # another generation on the same model
            return
        logits = output.logits if hasattr(output, "logits") else output[0]
        self._pending.append(torch.log_softmax(logits[:, -1, :].float(), dim=-1))

    def put(self, value) -> None:
        if self.prompt is None:
            self.prompt = value[0].tolist() if value.dim() > 1 else value.tolist()
            return
        if not self._pending:
            raise RuntimeError("logprobs: a token came without the logits it was chosen from")
        logprobs = self._pending.popleft()
        ids = value.reshape(-1).to(logprobs.device)
        chosen = logprobs.gather(1, ids[:, None]).squeeze(1)
        if self.top:
            best = logprobs.topk(min(self.top, logprobs.shape[-1]), dim=-1)
            top_lp, top_ids = best.values.tolist(), best.indices.tolist()
        else:
            top_lp, top_ids = [[] for _ in range(ids.shape[0])], [[] for _ in range(ids.shape[0])]
        self.steps.append((ids.tolist(), chosen.tolist(), top_lp, top_ids))
        if self.on_step is not None:
            self.on_step(len(self.steps) - 1)

    def end(self) -> None:
        self._pending.clear()
        if self.on_end is not None:
            self.on_end()

    def row(self, row: int, new_ids: list[int], keep: Callable[[int], bool], pieces: TokenPieces) -> list[dict[str, Any]]:
        """The entries of one returned sequence: new_ids are its generated ids; keep(id) says which tokens are
        part of its text (special tokens and padding are not)."""
        out = []
        for t, token in enumerate(new_ids[: len(self.steps)]):
            if not keep(token):
                continue
            ids, chosen, top_lp, top_ids = self.steps[t]
            if ids[row] != token:
                raise RuntimeError(f"logprobs: step {t} chose {ids[row]}, the sequence holds {token}")
            out.append(self.entry(t, row, pieces))
        return out

    def entry(self, step: int, row: int, pieces: TokenPieces) -> dict[str, Any]:
        ids, chosen, top_lp, top_ids = self.steps[step]
        entry = pieces.entry(ids[row], chosen[row])
        entry["top_logprobs"] = [pieces.entry(i, lp) for i, lp in zip(top_ids[row], top_lp[row])]
        return entry


class TokenPieces:
    """Each token's exact bytes and OpenAI's text for it: the decoded text where the bytes are whole UTF-8,
    else "bytes:\\xe2\\x80" as OpenAI writes a piece of a character. Byte-level BPE (GPT-2, Llama 3, Qwen) is
    mapped back through GPT-2's byte alphabet, SentencePiece pieces through their "▁" and <0xNN> bytes."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.kind = decoder_kind(tokenizer)
        self.special = {int(i): str(t) for t, i in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids)}
        self._bytes: dict[int, bytes] = {}
        self._unbyte = {c: b for b, c in bytes_to_unicode().items()}

    def bytes_of(self, token_id: int) -> bytes:
        cached = self._bytes.get(token_id)
        if cached is not None:
            return cached
        if token_id in self.special:
            data = self.special[token_id].encode()
        else:
            piece = self.tokenizer.convert_ids_to_tokens(token_id)
            if piece is None:
                data = b""
            elif self.kind == "byte-level" and all(c in self._unbyte for c in piece):
                data = bytes(self._unbyte[c] for c in piece)
            elif self.kind == "sentencepiece" and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                data = bytes([int(piece[3:5], 16)])
            elif self.kind == "sentencepiece":
                data = piece.replace("\u2581", " ").encode()
            else:  # WordPiece and the rest: the decoded text is as close as the tokenizer says
                data = self.tokenizer.decode([token_id]).encode()
        self._bytes[token_id] = data
        return data

    def entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        data = self.bytes_of(token_id)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = "bytes:" + "".join(f"\\x{b:02x}" for b in data)
        return {"token": text, "id": int(token_id), "logprob": float(logprob), "bytes": list(data)}


def decoder_kind(tokenizer) -> str:
    """"byte-level", "sentencepiece" or "other", from the decoder the tokenizer's own tokenizer.json declares."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None) if backend is not None else None
    if decoder is None:
        return "other"
    try:
        spec = json.loads(decoder.__getstate__())
    except (ValueError, TypeError, AttributeError):
        return "other"
    types = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            types.add(node.get("type"))
            for child in node.get("decoders") or []:
                walk(child)

    walk(spec)
    if "ByteLevel" in types:
        return "byte-level"
    if types & {"Metaspace", "ByteFallback", "Replace"}:
        return "sentencepiece"
    return "other"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE spells every byte with one of these)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))
