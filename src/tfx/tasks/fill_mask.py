"""fill-mask: predict the words behind [MASK] with an encoder-only model (or BART's denoiser).

`[MASK]` works for every model: it is rewritten to the tokenizer's own mask token. The vocabulary
projection, the largest matrix in the model, is computed only at the masked positions."""

from __future__ import annotations

import re
from typing import Any

from tfx.errors import RecordError, UsageError
from tfx.tasks.base import Task, input_limit, log, too_long

GENERIC_MASK = "[MASK]"


class FillMask(Task):
    name = "fill-mask"

    def __init__(self, loaded, params: dict[str, Any]):
        super().__init__(loaded, params)
        tok = self.tokenizer
        if tok.mask_token is None:
            raise UsageError(f"{loaded.name}'s tokenizer has no mask token.", "Use a masked-LM model such as bert-base-uncased or roberta-base.")
        self.mask = tok.mask_token
        self.masks = re.compile("|".join(re.escape(m) for m in {GENERIC_MASK, self.mask}))
        self.top_k = params.get("top_k")
        if self.top_k is not None and self.top_k < 1:
            raise UsageError("--top-k must be at least 1.", "Use e.g. --top-k 5.")
        self.target_ids = self._target_ids(params.get("targets"))
        self.truncate = not params.get("no_truncate")
        self.limit = input_limit(loaded)
        self._selected = None
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

    def _target_ids(self, targets: str | None) -> list[int] | None:
        if not targets:
            return None
        vocab = self.tokenizer.get_vocab()
        ids = []
        for word in (w.strip() for w in targets.split(",")):
            if not word:
                continue
            for form in (word, "Ġ" + word, "▁" + word, word.lower()):
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

    def normalize(self, text: str) -> str:
        return text.replace(GENERIC_MASK, self.mask) if self.mask != GENERIC_MASK else text

    def check(self, text: str) -> None:
        if not self.masks.search(text):
            raise RecordError(f"no mask in the input; write {GENERIC_MASK} where the missing word goes")
        if not self.truncate:
            n = len(self.tokenizer(self.normalize(text))["input_ids"])
            if n > self.limit:
                raise too_long("model's input", n, self.limit)

    def run(self, texts: list[str]) -> list[dict[str, Any]]:
        import torch

        enc = self.tokenizer([self.normalize(t) for t in texts], return_tensors="pt", padding=True, truncation=True, max_length=self.limit)
        enc = enc.to(self.device)
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
        results, row = [], 0
        for text, count in zip(texts, counts):
            preds = [self._candidates(scores[row + j], indices[row + j]) for j in range(count)]
            row += count
            results.append({"output": self._fill(text, [p[0]["token"] for p in preds]), "predictions": preds})
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

    def default_batch_size(self) -> int:
        return 32 if self.device == "cpu" else 128


def candidates_text(result: dict[str, Any]) -> str:
    """--top-k on a pipe: one line per record, token<TAB>score for each candidate, mask after mask."""
    return "\t".join(f"{c['token']}\t{c['score']:.4f}" for preds in result["predictions"] for c in preds)


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for m, preds in enumerate(result["predictions"], 1):
        rows += [(str(m), str(r), c["token"], f"{c['score']:.4f}") for r, c in enumerate(preds, 1)]
    return rows
