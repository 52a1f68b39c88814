"""embed and rank on the ONNX Runtime backend: sentence-transformers' modules (Transformer, Pooling, Dense)
exported as one graph (tfx.onnx.export), tokenized as SentenceTransformer.encode tokenizes (longest-first
truncation at max_seq_length), normalised and cut (--dimensions) in numpy as encode does: truncate_dim first,
then unit length. Models with prompts are left to sentence-transformers (Unsupported). The records' check,
cost and results are embed's and rank's own (EmbedInputs, RankInputs): only the model differs."""

from __future__ import annotations

from tfx import onnx as backend
from tfx.tasks.embed import EmbedInputs, plain_model_note
from tfx.tasks.rank import RankInputs


def unit(vectors):
    """torch.nn.functional.normalize(p=2, dim=1): each row over max(its norm, 1e-12)."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _no_prompts(loaded) -> None:
    facts = loaded.model.facts
    if any(facts.get("prompts", {}).values()) or (facts.get("default_prompt_name") and facts["prompts"].get(facts["default_prompt_name"])):
        raise backend.Unsupported(f"{loaded.name} adds prompts to its inputs, which the onnx backend does not")


class OnnxEmbed(EmbedInputs):
    def __init__(self, loaded, settings):
        super().__init__(loaded, settings)
        self.model = loaded.model  # tfx.onnx.runner.Runner
        _no_prompts(loaded)
        plain_model_note(loaded)
        facts = self.model.facts
        self.normalize = facts["normalize"] if settings.normalize is None else settings.normalize
        self._take(loaded, settings, self.model.tokenizer, facts.get("max_seq_length"), facts.get("dimension"))

    def vectors(self, texts: list[str]):
        from tfx.onnx.runner import embed_rows

        out = embed_rows(self.model, texts)
        if self.dimensions is not None:
            out = out[:, : self.dimensions]
        return unit(out) if self.normalize else out


class OnnxRank(RankInputs):
    def __init__(self, loaded, settings):
        super().__init__(loaded, settings)
        self.model = loaded.model
        facts = self.model.facts
        if not settings.cross_encoder:
            _no_prompts(loaded)
        self._take(loaded, settings, self.model.tokenizer, facts.get("max_seq_length"), facts.get("num_labels", 1) if settings.cross_encoder else 1)
        if self.cross:
            if facts.get("activation") not in ("Sigmoid", "Identity"):
                raise backend.Unsupported(f"{loaded.name}'s cross-encoder activation {facts.get('activation')} is not one the onnx backend applies")
        else:
            self.query_vector = unit(self._embed([self.query]))[0]

    def _embed(self, texts: list[str]):
        from tfx.onnx.runner import embed_rows

        return embed_rows(self.model, texts)

    def scores(self, texts: list[str]) -> list[float]:
        if self.cross:
            from tfx.onnx.runner import pad, sigmoid

            tok = self.model.tokenizer
            enc = tok([self.query] * len(texts), texts, truncation=True, max_length=self.limit)
            logits = self.model.forward(pad([{k: enc[k][i] for k in enc} for i in range(len(texts))], self.model.inputs, tok)).reshape(len(texts), -1)[:, 0]
            return (sigmoid(logits) if self.model.facts["activation"] == "Sigmoid" else logits).tolist()
        return (unit(self._embed(texts)) @ self.query_vector).tolist()
