"""embed and rank on the ONNX Runtime backend: sentence-transformers' modules (Transformer, Pooling, Dense)
exported as one graph (tfx.onnx.export), tokenized as SentenceTransformer.encode tokenizes (longest-first
truncation at max_seq_length), normalised and cut (--dimensions) in numpy as encode does: truncate_dim first,
then unit length. Models with prompts are left to sentence-transformers (Unsupported)."""

from __future__ import annotations

from tfx import onnx as backend
from tfx.errors import RecordError, UsageError
from tfx.registry import CROSS_ENCODER_MODEL
from tfx.results import EmbedResult, RankResult
from tfx.tasks.base import Task, input_limit
from tfx.tasks.embed import TokenCount, plain_model_note


def unit(vectors):
    """torch.nn.functional.normalize(p=2, dim=1): each row over max(its norm, 1e-12)."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _no_prompts(loaded) -> None:
    facts = loaded.model.facts
    if any(facts.get("prompts", {}).values()) or (facts.get("default_prompt_name") and facts["prompts"].get(facts["default_prompt_name"])):
        raise backend.Unsupported(f"{loaded.name} adds prompts to its inputs, which the onnx backend does not")


class OnnxEmbed(Task):
    name = "embed"
    batch_sizes = (32, 128)
    window_batches = 32

    def __init__(self, loaded, settings):
        super().__init__(loaded, settings)
        self.model = loaded.model  # tfx.onnx.runner.Runner
        _no_prompts(loaded)
        plain_model_note(loaded)
        facts = self.model.facts
        self.normalize = facts["normalize"] if settings.normalize is None else settings.normalize
        self.dimensions = settings.dimensions
        size = facts.get("dimension")
        if self.dimensions is not None and size is not None and self.dimensions > size:
            raise UsageError(f"--dimensions {self.dimensions} is more than {loaded.name}'s {size}.", f"Use at most --dimensions {size}.")
        self.limit = facts.get("max_seq_length") or input_limit(loaded)
        self.tokens = TokenCount(self.model.tokenizer, self.limit, not settings.no_truncate)

    def check(self, text: str) -> None:
        if not isinstance(text, str):
            raise RecordError("embed takes one text per record")
        self.tokens.check(text)

    def cost(self, text: str) -> int:
        return self.tokens.count(text)

    def vectors(self, texts: list[str]):
        from tfx.onnx.runner import embed_rows

        out = embed_rows(self.model, texts)
        if self.dimensions is not None:
            out = out[:, : self.dimensions]
        return unit(out) if self.normalize else out

    def run(self, texts: list[str]) -> list[EmbedResult]:
        results = []
        for text, row in zip(texts, self.vectors(texts)):
            cut = self.tokens.over(text)
            results.append(EmbedResult("", cut > 0, embedding=row, dropped_tokens=cut))
        return results


class OnnxRank(Task):
    name = "rank"
    batch_sizes = (32, 128)

    def __init__(self, loaded, settings):
        super().__init__(loaded, settings)
        self.model = loaded.model
        self.query = settings.query
        self.cross = settings.cross_encoder
        facts = self.model.facts
        self.limit = facts.get("max_seq_length") or input_limit(loaded)
        self.tokens = TokenCount(self.model.tokenizer, self.limit, not settings.no_truncate)
        if self.cross:
            if facts.get("num_labels", 1) != 1:
                raise UsageError(f"{loaded.name} gives {facts['num_labels']} scores per pair; rank needs a cross-encoder with one.", f"Use e.g. {CROSS_ENCODER_MODEL}.")
            if facts.get("activation") not in ("Sigmoid", "Identity"):
                raise backend.Unsupported(f"{loaded.name}'s cross-encoder activation {facts.get('activation')} is not one the onnx backend applies")
        else:
            _no_prompts(loaded)
            plain_model_note(loaded)
            self.query_vector = unit(self._embed([self.query]))[0]

    def _embed(self, texts: list[str]):
        from tfx.onnx.runner import embed_rows

        return embed_rows(self.model, texts)

    def inputs_of(self, text: str) -> tuple[str, ...]:
        return (self.query, text) if self.cross else (text,)

    def cost(self, text: str) -> int:
        return self.tokens.count(text)

    def check(self, text: str) -> None:
        if not isinstance(text, str):
            raise RecordError("rank takes one text per record")
        self.tokens.check(*self.inputs_of(text))

    def run(self, texts: list[str]) -> list[RankResult]:
        if self.cross:
            from tfx.onnx.runner import pad, sigmoid

            tok = self.model.tokenizer
            enc = tok([self.query] * len(texts), texts, truncation=True, max_length=self.limit)
            logits = self.model.forward(pad([{k: enc[k][i] for k in enc} for i in range(len(texts))], self.model.inputs, tok)).reshape(len(texts), -1)[:, 0]
            scores = (sigmoid(logits) if self.model.facts["activation"] == "Sigmoid" else logits).tolist()
        else:
            scores = (unit(self._embed(texts)) @ self.query_vector).tolist()
        results = []
        for text, score in zip(texts, scores):
            cut = self.tokens.over(*self.inputs_of(text))
            results.append(RankResult(text, cut > 0, score=score, dropped_tokens=cut))
        return results
