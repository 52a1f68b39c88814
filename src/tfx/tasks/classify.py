"""classify: a fine-tuned sequence classifier's own labels (id2label), or zero-shot classification through
an NLI model (--labels), with exactly the scores of transformers' text-classification and
zero-shot-classification pipelines.

What makes it faster than the pipelines (bench/RESULTS-encoders.md): the records are sorted by token count,
and each batch is cut again, by exact token count, into forward passes that hold next to no padding yet
are large enough for efficient matrix products (Encoded.groups); one tokenizer call per batch, the scores
for a whole pass at once on the device, and zero-shot's text x label pairs batched like any rows instead of
one forward pass per label."""

from __future__ import annotations

from typing import Any

from tfx.errors import RecordError, UsageError
from tfx.results import ClassifyResult
from tfx.spec import ClassifySettings
from tfx.tasks.base import Task, input_limit, too_long

DEFAULT_HYPOTHESIS = "This example is {}."  # transformers' zero-shot default
TOKENS_PER_FORWARD = (4096, 16384)  # at most this many padded tokens per forward pass (CPU, GPU)
# What one more forward pass costs, in tokens' worth of compute: BERT-base's matrix products over 250 rows
# ran at 94 GFLOP/s against 122 over 1,000-2,000 (fp32, MKL, one thread; bench/RESULTS-encoders.md).
FORWARD_COST = 64


class Encoded:
    """A batch tokenized once (a row past the model's limit tokenized again, cut the way the pipelines cut:
    the text, never a zero-shot hypothesis), then grouped by exact token count into forward passes of at
    most `cap` padded tokens: next to no padding, so the model computes on real tokens almost only.
    `rows[k]` holds row k's encoding (lists); `dropped[k]` is how many tokens it lost."""

    def __init__(self, tokenizer, texts: list[str], limit: int, pairs: list[str] | None = None, **extra: Any):
        self.tokenizer = tokenizer
        args = (texts,) if pairs is None else (texts, pairs)
        enc = tokenizer(*args, **extra)
        self.keys = [k for k in enc.keys() if k != "length"]
        self.rows = [{k: enc[k][i] for k in self.keys} for i in range(len(texts))]
        self.dropped = [max(0, len(row["input_ids"]) - limit) for row in self.rows]
        over = [i for i, d in enumerate(self.dropped) if d]
        if over:  # rare: only these are tokenized again
            cut = tokenizer(*[[a[i] for i in over] for a in args], truncation="only_first" if pairs is not None else True, max_length=limit, **extra)
            for j, i in enumerate(over):
                self.rows[i] = {k: cut[k][j] for k in self.keys}
        self.names = [k for k in tokenizer.model_input_names if k in self.keys]

    def groups(self, cap: int) -> list[list[int]]:
        """Row indices in forward passes: rows sorted by length, cut into runs that minimise the padded
        tokens computed plus FORWARD_COST per pass (small passes make inefficient matrix products), none
        over `cap` padded tokens. Exact, by dynamic programming over the sorted lengths."""
        order = sorted(range(len(self.rows)), key=lambda i: len(self.rows[i]["input_ids"]))
        widths = [len(self.rows[i]["input_ids"]) for i in order]
        best, cut = [0] + [float("inf")] * len(order), [0] * (len(order) + 1)
        for j in range(1, len(order) + 1):
            width = widths[j - 1]
            for i in range(j - 1, -1, -1):
                if width * (j - i) > cap and i < j - 1:
                    break
                cost = best[i] + width * (j - i) + FORWARD_COST
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        out, j = [], len(order)
        while j > 0:
            out.append(order[cut[j] : j])
            j = cut[j]
        return out[::-1]

    def tensors(self, group: list[int], device: str) -> dict[str, Any]:
        """The model's inputs for a group of rows, padded on the tokenizer's side."""
        import torch

        width = max(len(self.rows[i]["input_ids"]) for i in group)
        tok = self.tokenizer
        fill = {"input_ids": tok.pad_token_id or 0, "token_type_ids": tok.pad_token_type_id, "attention_mask": 0}
        left = tok.padding_side == "left"
        out = {}
        for name in self.names:
            value = fill.get(name, 0)
            rows = [self.rows[i][name] for i in group]
            padded = [([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows]
            out[name] = torch.tensor(padded, dtype=torch.long, device=device)
        return out


def too_long_check(tokenizer, text: str, limit: int, pair: str | None = None) -> None:
    """--no-truncate: a RecordError for an input past the model's limit. Every token is at least one byte
    of text, so a short text is let through without tokenizing it."""
    if len(text.encode("utf-8")) + len((pair or "").encode("utf-8")) + 8 <= limit:
        return
    n = len(tokenizer(text, pair)["input_ids"])
    if n > limit:
        raise too_long("model's input", n, limit)


def token_count(tokenizer, text) -> int:
    """The pipeline sorts records by this before batching: tokens, not characters, so a batch's rows
    have nearly equal lengths (the text is already cut to the model's reach: pipeline.clip)."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if isinstance(text, str) else len(str(text))


def score_function(config) -> str:
    """What transformers' text-classification pipeline applies to the logits, from the model's config."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def entailment_id(config) -> int | None:
    """The entailment label's id, found as the zero-shot pipeline finds it (its name starts with "entail")."""
    for label, index in config.label2id.items():
        if label.lower().startswith("entail"):
            return int(index)
    return None


class Classify(Task):
    name = "classify"
    batch_sizes = (128, 256)  # records per run: grouped again by exact length into forward passes

    def __init__(self, loaded, settings: ClassifySettings):
        super().__init__(loaded, settings)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        config = self.model.config
        self.id2label = {int(k): v for k, v in config.id2label.items()}
        self.limit = input_limit(loaded)
        self.truncate = not settings.no_truncate
        self.labels = settings.labels
        self.function = score_function(config)
        self.budget = TOKENS_PER_FORWARD[0] if self.device == "cpu" else TOKENS_PER_FORWARD[1]
        if self.labels:
            self._zero_shot_setup(loaded.name, config, settings)
        self.top_k = settings.top_k or (len(self.labels) if self.labels and settings.multi_label else 1)

    def _zero_shot_setup(self, name: str, config, settings: ClassifySettings) -> None:
        entail = entailment_id(config)
        if entail is None:
            labels = ", ".join(self.id2label[i] for i in sorted(self.id2label))
            raise UsageError(
                f"{name} has no entailment label (its labels: {labels}), so it cannot do zero-shot classification.",
                "--labels needs an NLI model, e.g. facebook/bart-large-mnli; or drop --labels to use the model's own labels.",
            )
        self.entail = entail
        self.contradiction = -1 if entail == 0 else 0  # the pipeline's choice, kept for equal scores
        self.multi_label = settings.multi_label or len(self.labels) == 1
        template = settings.hypothesis_template or DEFAULT_HYPOTHESIS
        self.hypotheses = [template.format(label) for label in self.labels]
        specials = self.tokenizer.num_special_tokens_to_add(pair=True)
        longest = max(len(ids) for ids in self.tokenizer(self.hypotheses, add_special_tokens=False)["input_ids"])
        if longest + specials >= self.limit:
            raise UsageError(f"a zero-shot hypothesis is {longest} tokens, leaving no room for the text in {name}'s {self.limit}.", "Use shorter --labels or --hypothesis-template.")

    def check(self, text: str) -> None:
        if not isinstance(text, str):
            raise RecordError("classify takes one text per record")
        if not self.truncate:
            if self.labels:
                longest = max(self.hypotheses, key=len)
                too_long_check(self.tokenizer, text, self.limit, longest)
            else:
                too_long_check(self.tokenizer, text, self.limit)

    def cost(self, text: str) -> int:
        return token_count(self.tokenizer, text)

    def run(self, texts: list[str]) -> list[ClassifyResult]:
        if self.labels:
            return self._zero_shot(texts)
        batch = Encoded(self.tokenizer, texts, self.limit)
        scores = self._scores(batch, self.function)
        results = []
        for row, dropped in zip(scores, batch.dropped):
            order = sorted(range(len(row)), key=lambda i: -row[i])[: self.top_k]  # stable: ties keep label order
            results.append(self._result([(self.id2label[i], row[i]) for i in order], dropped))
        return results

    def _scores(self, batch: Encoded, function: str = "none") -> list[list[float]]:
        """Each row's scores (the logits through `function`), in the batch's order."""
        out: list[list[float]] = [[] for _ in batch.rows]
        for group in batch.groups(self.budget):
            for i, row in zip(group, self._group_scores(batch, group, function)):
                out[i] = row
        return out

    def _group_scores(self, batch: Encoded, group: list[int], function: str) -> list[list[float]]:
        """One group's logits through `function` (none, softmax, sigmoid): the only part that runs the model
        (the onnx task overrides it and `_entailment`; the rest of classify is shared)."""
        import torch

        with torch.inference_mode():
            logits = self.model(**batch.tensors(group, self.device)).logits.float()
        if function == "softmax":
            logits = logits.softmax(dim=-1)
        elif function == "sigmoid":
            logits = logits.sigmoid()
        return logits.tolist()

    def _zero_shot(self, texts: list[str]) -> list[ClassifyResult]:
        """Each text against each label's hypothesis; the entailment logits become the labels' scores."""
        n = len(self.labels)
        batch = Encoded(self.tokenizer, [t for t in texts for _ in range(n)], self.limit, self.hypotheses * len(texts))
        results = []
        for i, row in enumerate(self._entailment(self._scores(batch), len(texts), n)):
            order = sorted(range(n), key=lambda j: -row[j])[: self.top_k]
            results.append(self._result([(self.labels[j], row[j]) for j in order], max(batch.dropped[i * n : (i + 1) * n])))
        return results

    def _entailment(self, rows: list[list[float]], texts: int, n: int) -> list[list[float]]:
        """The labels' scores of each text from its n hypotheses' logits (rows: text by text, label by label)."""
        import torch

        grid = torch.tensor(rows).view(texts, n, -1)
        if self.multi_label:  # each label on its own: entailment against contradiction
            return grid[..., [self.contradiction, self.entail]].softmax(dim=-1)[..., 1].tolist()
        return grid[..., self.entail].softmax(dim=-1).tolist()  # the labels compete: a softmax over their entailment logits

    def _result(self, ranked: list[tuple[str, float]], dropped: int) -> ClassifyResult:
        labels = [{"label": label, "score": score} for label, score in ranked]
        return ClassifyResult(output=labels[0]["label"], truncated=dropped > 0, labels=labels, dropped_tokens=dropped)
