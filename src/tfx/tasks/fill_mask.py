"""fill-mask: predict the words behind [MASK] with an encoder-only model (or BART's denoiser).

`[MASK]` works for every model: it is rewritten to the tokenizer's own mask token. The vocabulary
projection, the largest matrix in the model, is computed only at the masked positions."""

from __future__ import annotations

import re
from typing import Any

from tfx.errors import RecordError, UsageError
from tfx.results import FillMaskResult
from tfx.spec import FillMaskSettings
from tfx.tasks.base import Task, input_limit, log, too_long

GENERIC_MASK = "[MASK]"


class FillMask(Task):
    name = "fill-mask"
    batch_sizes = (32, 128)

    def __init__(self, loaded, settings: FillMaskSettings):
        super().__init__(loaded, settings)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        tok = self.tokenizer
        if tok.mask_token is None:
            raise UsageError(f"{loaded.name}'s tokenizer has no mask token.", "Use a masked-LM model such as bert-base-uncased or roberta-base.")
        self.mask = tok.mask_token
        self.masks = re.compile("|".join(re.escape(m) for m in {GENERIC_MASK, self.mask}))
        self.top_k = settings.top_k
        self.target_ids = self._target_ids(settings.targets)
        self.truncate = not settings.no_truncate
        self.limit = input_limit(loaded)
        self._selected = None
        self._wrap: tuple[list[int], list[int]] | None = None
        head = self.model.get_output_embeddings()
        self._hook = head.register_forward_pre_hook(self._only_masked_positions) if head is not None else None

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _only_masked_positions(self, module, args):
        """Feed the vocabulary projection only the hidden states at mask positions: [B, T, H] -> [N, H]."""
        hidden = args[0]
        if self._selected is None or hidden.dim() != 3 or tuple(hidden.shape[:2]) != tuple(self._selected.shape):
            return None
        return (hidden[self._selected], *args[1:])

    def _target_ids(self, targets: tuple[str, ...] | None) -> list[int] | None:
        if not targets:
            return None
        vocab = self.tokenizer.get_vocab()
        ids = []
        for word in targets:
            # The space-prefixed piece first: a mask inside a sentence stands for " word" in byte-level BPE
            # (RoBERTa, BART: "Ġword") and SentencePiece ("▁word") vocabularies; WordPiece has neither.
            for form in ("Ġ" + word, "▁" + word, word, word.lower()):
                if form in vocab:
                    ids.append(vocab[form])
                    break
            else:
                pieces = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
                if not pieces:
                    raise UsageError(f"--targets word '{word}' is not in the vocabulary.", "Use single words.")
                log.warning("target %r is not one token in the vocabulary; using its first piece", word)
                ids.append(pieces[0])
        if not ids:
            raise UsageError("--targets is empty.", "Give comma-separated words, e.g. --targets capital,city.")
        return ids

    def char_window(self, text: str, limit: int) -> tuple[int, int]:
        """What pipeline.clip keeps of a text too long to tokenize whole: `limit` characters centred on its
        masks (all of them, from the first to the last, when they are further apart: check() refuses that)."""
        found = [m.span() for m in self.masks.finditer(text)]
        if not found:
            return 0, limit
        first, last = found[0][0], found[-1][1]
        if last - first > limit:  # check() refuses it, without tokenizing
            return first, last
        start = max(0, min(first - (limit - (last - first)) // 2, len(text) - limit))
        return start, start + limit

    def normalize(self, text: str) -> str:
        return text.replace(GENERIC_MASK, self.mask) if self.mask != GENERIC_MASK else text

    def check(self, text: str) -> None:
        if not self.masks.search(text):
            raise RecordError(f"no mask in the input; write {GENERIC_MASK} where the missing word goes")
        if len(text.encode("utf-8")) + 2 <= self.limit:
            return  # every token is at least one byte: it fits
        spans = [m.span() for m in self.masks.finditer(text)]
        if spans[-1][1] - spans[0][0] > self.max_chars:
            raise RecordError(f"its masks are {spans[-1][1] - spans[0][0]:,} characters apart, more than the model reads at once; split the text")
        ids = self.tokenizer(self.normalize(text))["input_ids"]
        if not self.truncate and len(ids) > self.limit:
            raise too_long("model's input", len(ids), self.limit)
        masks = [i for i, t in enumerate(ids) if t == self.tokenizer.mask_token_id]
        if masks and masks[-1] - masks[0] + 1 > self.limit - self._specials():
            raise RecordError(f"its masks are {masks[-1] - masks[0] + 1} tokens apart, more than the model's input limit of {self.limit}; split the text")

    def _specials(self) -> int:
        prefix, suffix = self._wrapping()
        return len(prefix) + len(suffix)

    def _wrapping(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after a text ([CLS] ... [SEP], <s> ... </s>)."""
        if self._wrap is None:
            full = self.tokenizer("a")["input_ids"]
            bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
            at = next((i for i in range(len(full)) if full[i : i + len(bare)] == bare), 0)
            self._wrap = (full[:at], full[at + len(bare) :])
        return self._wrap

    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """Token ids with the model's special tokens; a text past the limit keeps a window around its
        masks (never cutting a mask out) and is marked truncated."""
        prefix, suffix = self._wrapping()
        rows = self.tokenizer([self.normalize(t) for t in texts], add_special_tokens=False)["input_ids"]
        room = self.limit - len(prefix) - len(suffix)
        out, cut = [], []
        for text, row in zip(texts, rows):
            cut.append(max(len(row) - room, 0))  # tokens dropped (the pipeline reports them)
            if cut[-1]:
                masks = [i for i, t in enumerate(row) if t == self.tokenizer.mask_token_id]
                first, last = (masks[0], masks[-1]) if masks else (0, 0)
                start = max(0, min(first - (room - (last - first + 1)) // 2, len(row) - room))
                row = row[start : start + room]
            out.append(prefix + row + suffix)
        return out, cut

    def run(self, texts: list[str]) -> list[FillMaskResult]:
        import torch

        ids, cut = self._encode(texts)
        enc = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        selected = enc["input_ids"] == self.tokenizer.mask_token_id
        self._selected = selected
        try:
            with torch.inference_mode():
                logits = self.model(**enc).logits
        finally:
            self._selected = None
        if logits.dim() == 3:  # a head the hook could not narrow: pick the masked rows now
            logits = logits[selected]
        probs = logits.float().softmax(dim=-1)
        if self.target_ids is not None:
            ids = torch.tensor(self.target_ids, device=probs.device)
            probs = probs[:, ids]
        k = min(self.top_k or 1, probs.shape[-1])
        scores, indices = probs.topk(k, dim=-1)
        if self.target_ids is not None:
            indices = ids[indices]
        counts = selected.sum(dim=1).tolist()
        return self._results(texts, counts, cut, scores, indices)

    def _results(self, texts: list[str], counts: list[int], cut: list[int], scores, indices) -> list[FillMaskResult]:
        """Each text's masks, in order: the rows of scores/indices (top-k per masked position, torch or numpy)
        taken `counts[i]` at a time; cut: the tokens each text lost to truncation."""
        results, row = [], 0
        for text, count in zip(texts, counts):
            preds = [self._candidates(scores[row + j], indices[row + j]) for j in range(count)]
            row += count
            dropped = cut[len(results)]
            results.append(FillMaskResult(self._fill(text, [p[0]["token"] for p in preds]), dropped > 0, preds, self.top_k is not None, dropped_tokens=dropped))
        return results

    def _candidates(self, scores, indices) -> list[dict[str, Any]]:
        out = []
        for score, index in zip(scores.tolist(), indices.tolist()):
            token = self.tokenizer.decode([index]).strip()
            out.append({"token": token[2:] if token.startswith("##") else token, "score": round(score, 6), "token_id": index})
        return out

    def _fill(self, text: str, words: list[str]) -> str:
        """Put each best word where its mask was, keeping the input's own text and casing around it."""
        pieces = self.masks.split(text)
        filled = [pieces[0]]
        for i, piece in enumerate(pieces[1:]):
            filled.append(words[i] if i < len(words) else GENERIC_MASK)
            filled.append(piece)
        return "".join(filled)
