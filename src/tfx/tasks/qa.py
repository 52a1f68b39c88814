"""qa: extractive question answering, the answer being a span of the context.

transformers 5 dropped its question-answering pipeline (as it dropped translation and summarisation), so
this is tfx's own code, following what that pipeline did: the (question, context) pair is cut into
overlapping windows of the model's size by the fast tokenizer (return_overflowing_tokens, with `stride`
tokens shared by neighbours), each window's start and end logits become probabilities over its context
tokens (and [CLS]), a span scores p(start) * p(end) with start <= end and at most --max-answer-length
tokens, and the best spans across all windows win, their offsets mapped back to characters of the
context (offset_mapping). "No answer" (output ""): when the null score (p(start = end = [CLS]), the least
of all windows) beats every span; SQuAD 2 models are trained to point there when the context has no
answer, and windows that do not hold the answer do too, which is why the least is taken."""

from __future__ import annotations

from typing import Any

from tfx.errors import RecordError, UsageError
from tfx.results import QaResult
from tfx.spec import QaSettings
from tfx.tasks.base import CHARS_PER_TOKEN, LONG_CONTEXTS, Task, input_limit

WINDOW = 384  # tokens per window, at most (transformers' pipeline used 384 for 512-position models)
NO_CONTEXT = 'no context: give --context FILE or TEXT, or jsonl records with a "context" field'


class Qa(Task):
    name = "qa"
    batch_sizes = (8, 32)  # questions per batch; their windows run `window_batch` at a time

    def __init__(self, loaded, settings: QaSettings):
        super().__init__(loaded, settings)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        if not getattr(self.tokenizer, "is_fast", False):
            raise UsageError(f"{loaded.name} has no fast tokenizer (tokenizer.json), which qa needs for character offsets.", "Use a model that ships one.")
        self.limit = input_limit(loaded)
        self.window = min(self.limit, WINDOW)
        self.stride = settings.stride if settings.stride is not None else self.window // 4
        if self.stride >= self.window // 2:
            raise UsageError(f"--stride {self.stride} is too large for {loaded.name}'s windows of {self.window} tokens.", f"Use less than {self.window // 2}.")
        self.context = settings.context
        self.top_k = settings.top_k
        self.max_answer_length = settings.max_answer_length
        self.question_first = self.tokenizer.padding_side == "right"
        self.window_batch = 16 if self.device == "cpu" else 64

    @property
    def max_chars(self) -> int:
        return self.limit * CHARS_PER_TOKEN * LONG_CONTEXTS  # a long context is read whole, window by window

    def _pair(self, value) -> tuple[str, str]:
        question, context = value if isinstance(value, tuple) else (value, self.context)
        if context is None or not context.strip():
            raise RecordError(NO_CONTEXT)
        return question, context

    def check(self, value) -> None:
        question, _ = self._pair(value)
        if len(question.encode("utf-8")) + self.stride + 8 <= self.window // 2:
            return
        n = len(self.tokenizer(question, add_special_tokens=False)["input_ids"])
        if n + self.stride + 4 > self.window // 2:
            raise RecordError(f"the question is {n} tokens; it must leave room for the context in the model's windows of {self.window} tokens")

    def cost(self, value) -> int:
        question, context = value if isinstance(value, tuple) else (value, self.context or "")
        return len(question) + len(context)

    def run(self, values: list) -> list[QaResult]:
        pairs = [self._pair(v) for v in values]
        enc = self._windows(pairs)
        start_logits, end_logits = self._logits(enc)
        return self._answers(enc, [c for _, c in pairs], start_logits, end_logits)

    def _windows(self, pairs: list[tuple[str, str]]):
        """The (question, context) pairs cut into the model's windows, with offsets (every window of every pair)."""
        questions, contexts = [q.lstrip() for q, _ in pairs], [c for _, c in pairs]
        first, second = (questions, contexts) if self.question_first else (contexts, questions)
        return self.tokenizer(
            first, second, truncation="only_second" if self.question_first else "only_first", max_length=self.window,
            stride=self.stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding=True,
        )  # fmt: skip

    def _logits(self, enc):
        """(start, end) logits of every window as float32 numpy arrays [windows, tokens]: the only part that
        runs the model (the onnx task overrides it; the rest of qa is numpy)."""
        import numpy as np
        import torch

        inputs = {k: enc[k] for k in self.tokenizer.model_input_names if k in enc}
        starts, ends = [], []
        for at in range(0, len(enc["input_ids"]), self.window_batch):
            batch = {k: torch.tensor(v[at : at + self.window_batch], device=self.device) for k, v in inputs.items()}
            with torch.inference_mode():
                out = self.model(**batch)
            starts.append(out.start_logits.float().cpu().numpy())
            ends.append(out.end_logits.float().cpu().numpy())
        return np.concatenate(starts), np.concatenate(ends)

    def _answers(self, enc, contexts: list[str], start_logits, end_logits) -> list[QaResult]:
        """Each record's best spans across its windows, mapped back to characters of its context."""
        import numpy as np

        found: list[list[dict[str, Any]]] = [[] for _ in contexts]
        null: list[float] = [1.0] * len(contexts)
        side = 1 if self.question_first else 0
        for i, record in enumerate(enc["overflow_to_sample_mapping"]):
            wanted = np.array([s == side for s in enc.sequence_ids(i)]) & (np.array(enc["attention_mask"][i]) == 1)
            cls = self._cls_index(enc["input_ids"][i])
            spans, null_score = self._spans(start_logits[i], end_logits[i], wanted, cls)
            null[record] = min(null[record], null_score)
            offsets = enc["offset_mapping"][i]
            for s, e, score in spans:
                found[record].append({"answer": contexts[record][offsets[s][0] : offsets[e][1]], "score": score, "start": offsets[s][0], "end": offsets[e][1]})
        return [self._result(answers, null_score) for answers, null_score in zip(found, null)]

    def _cls_index(self, ids: list[int]) -> int:
        cls = self.tokenizer.cls_token_id
        return ids.index(cls) if cls is not None and cls in ids else 0

    def _spans(self, start, end, wanted, cls: int) -> tuple[list[tuple[int, int, float]], float]:
        """The window's best (start, end, score) token spans inside the context, and its null score:
        softmax over the context tokens and [CLS], as transformers' pipeline did."""
        import numpy as np

        keep = wanted.copy()
        keep[cls] = True
        start = np.exp(np.where(keep, start, -10000.0) - np.where(keep, start, -10000.0).max())
        end = np.exp(np.where(keep, end, -10000.0) - np.where(keep, end, -10000.0).max())
        start, end = start / start.sum(), end / end.sum()
        null_score = float(start[cls] * end[cls])
        start[~wanted], end[~wanted] = 0.0, 0.0
        scores = np.tril(np.triu(np.outer(start, end)), self.max_answer_length - 1)  # start <= end, short enough
        k = min(self.top_k or 1, int(wanted.sum()) ** 2 or 1)
        flat = scores.ravel()
        best = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
        best = best[np.argsort(-flat[best], kind="stable")]
        spans = []
        for index in best:
            s, e = divmod(int(index), scores.shape[1])
            if wanted[s] and wanted[e] and flat[index] > 0:
                spans.append((s, e, float(flat[index])))
        return spans, null_score

    def _result(self, answers: list[dict[str, Any]], null_score: float) -> QaResult:
        answers.sort(key=lambda a: -a["score"])
        unique, seen = [], set()
        for a in answers:
            if (a["start"], a["end"]) not in seen:
                seen.add((a["start"], a["end"]))
                unique.append(a)
        if not unique or null_score > unique[0]["score"]:
            unique.append({"answer": "", "score": null_score, "start": None, "end": None})
            unique.sort(key=lambda a: -a["score"])
        unique = unique[: self.top_k or 1]
        best = unique[0]
        return QaResult(best["answer"], score=best["score"], start=best["start"], end=best["end"], answers=unique if self.top_k is not None else None)
