"""ner: token classification grouped into entities, with exactly the labels, scores and character offsets of
transformers' token-classification pipeline for each --aggregate strategy (simple, first, average, max,
none). Offsets come from the fast tokenizer's offset mapping, so they point into the text as given; the
entity's `word` is that text (the pipeline's is re-made from word pieces: lower-cased by an uncased model,
"Jean - Baptiste" for "Jean-Baptiste").

Faster than the pipeline: rows grouped by exact token count into forward passes with next to no padding
(classify.Encoded, shared with classify), the softmax for a whole pass on the device, and the per-token work
in plain Python lists (one token-to-string call per row)."""

from __future__ import annotations

from typing import Any

from tfx.errors import RecordError, UsageError
from tfx.results import NerResult
from tfx.spec import NerSettings
from tfx.tasks.base import Task, input_limit
from tfx.tasks.classify import TOKENS_PER_FORWARD, Encoded, token_count, too_long_check

IGNORED = ("O",)  # the pipeline's default ignore_labels


class Ner(Task):
    name = "ner"
    batch_sizes = (128, 256)  # records per run: grouped again by exact length into forward passes

    def __init__(self, loaded, settings: NerSettings):
        super().__init__(loaded, settings)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        if not getattr(self.tokenizer, "is_fast", False):
            raise UsageError(f"{loaded.name} has no fast tokenizer (tokenizer.json), so entities cannot be placed in the text.", "Use a model that ships tokenizer.json, e.g. dslim/bert-base-NER.")
        self.id2label = {int(k): v for k, v in self.model.config.id2label.items()}
        self.aggregate = settings.aggregate
        self.limit = input_limit(loaded)
        self.truncate = not settings.no_truncate
        # How the pipeline tells a word's later pieces: WordPiece marks them (##), others by the text around them.
        self.marks_pieces = bool(getattr(self.tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None))
        self.unk_id = self.tokenizer.unk_token_id
        self.budget = TOKENS_PER_FORWARD[0] if self.device == "cpu" else TOKENS_PER_FORWARD[1]

    def check(self, text: str) -> None:
        if not isinstance(text, str):
            raise RecordError("ner takes one text per record")
        if not self.truncate:
            too_long_check(self.tokenizer, text, self.limit)

    def cost(self, text: str) -> int:
        return token_count(self.tokenizer, text)

    def run(self, texts: list[str]) -> list[NerResult]:
        batch = Encoded(self.tokenizer, texts, self.limit, return_offsets_mapping=True, return_special_tokens_mask=True)
        wide = self.aggregate in ("first", "average", "max")  # these need every label's score per token
        left = self.tokenizer.padding_side == "left"
        results: list[NerResult | None] = [None] * len(texts)
        for group in batch.groups(self.budget):
            probs_np, best_np, index_np = self.scores(batch, group, wide)
            for g, i in enumerate(group):
                row = batch.rows[i]
                n = len(row["input_ids"])
                at = slice(best_np.shape[1] - n, None) if left else slice(0, n)
                text = texts[i]
                pre = self._pre_entities(text, row)
                if wide:
                    entities = group_entities(self._words(text, pre, probs_np[g, at]), text)
                else:
                    labels, scores = index_np[g, at], best_np[g, at]
                    per_token = [_entity(self.id2label[int(labels[t])], scores[t], text, start, end) for t, start, end, _ in pre]
                    entities = per_token if self.aggregate == "none" else group_entities(per_token, text)
                kept = [e for e in entities if e["label"] not in IGNORED]
                for e in kept:
                    e["score"] = float(e["score"])
                words = "  ".join(f"{e['word']}/{e['label']}" for e in kept)
                results[i] = NerResult(output=words, truncated=batch.dropped[i] > 0, entities=kept, dropped_tokens=batch.dropped[i])
        return results  # type: ignore[return-value]

    def scores(self, batch: Encoded, group: list[int], wide: bool):
        """One model batch's label probabilities as numpy: (every label's, or None unless wide; the best
        label's score; its index), each [rows, tokens, ...]. The onnx task overrides only this."""
        import torch

        with torch.inference_mode():
            probs = self.model(**batch.tensors(group, self.device)).logits.float().softmax(dim=-1)
        best, index = probs.max(dim=-1)
        return (probs.cpu().numpy() if wide else None), best.cpu().numpy(), index.cpu().numpy()

    def _pre_entities(self, text: str, row: dict[str, list]) -> list[tuple[int, int, int, bool]]:
        """(position, start, end, is a later piece of a word) for each token that is not special, decided
        as the pipeline's gather_pre_entities decides."""
        ids, special = row["input_ids"], row["special_tokens_mask"]
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        out = []
        for t, (start, end) in enumerate(row["offset_mapping"]):
            if special[t]:
                continue
            if ids[t] == self.unk_id:
                piece = False
            elif self.marks_pieces:
                piece = len(tokens[t]) != end - start
            else:
                piece = start > 0 and " " not in text[start - 1 : start + 1]
            out.append((t, start, end, piece))
        return out

    def _words(self, text: str, pre: list[tuple[int, int, int, bool]], probs) -> list[dict[str, Any]]:
        """first / average / max: one label per word (its pieces grouped), as the pipeline's aggregate_words."""
        import numpy as np

        groups: list[list[tuple[int, int, int, bool]]] = []
        for token in pre:
            if groups and token[3]:
                groups[-1].append(token)
            else:
                groups.append([token])
        words = []
        for group in groups:
            if self.aggregate == "first":
                scores = probs[group[0][0]]
            elif self.aggregate == "max":
                scores = max((probs[t] for t, _, _, _ in group), key=lambda s: s.max())
            else:
                scores = np.nanmean(np.stack([probs[t] for t, _, _, _ in group]), axis=0)
            label = int(scores.argmax())
            words.append(_entity(self.id2label[label], scores[label], text, group[0][1], group[-1][2]))
        return words


def _entity(label: str, score, text: str, start: int, end: int) -> dict[str, Any]:
    return {"word": text[start:end], "label": label, "score": score, "start": start, "end": end}


def _tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def group_entities(entities: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Neighbours with the same tag become one entity unless the later one begins (B-) a new one; the
    score is the mean of theirs, the label the tag without its B-/I- (the pipeline's group_entities)."""
    import numpy as np

    groups: list[list[dict[str, Any]]] = []
    for entity in entities:
        if groups:
            bi, tag = _tag(entity["label"])
            if tag == _tag(groups[-1][-1]["label"])[1] and bi != "B":
                groups[-1].append(entity)
                continue
        groups.append([entity])
    out = []
    for group in groups:
        score = np.mean(np.nanmean([e["score"] for e in group]))
        out.append(_entity(group[0]["label"].split("-", 1)[-1], score, text, group[0]["start"], group[-1]["end"]))
    return out
