"""rank: each input line scored against one query, by the cosine of sentence-transformers embeddings
(the query through encode_query, the lines through encode_document, as sentence-transformers' own
retrieval does), or with --cross-encoder by a CrossEncoder reading each (query, line) pair (its predict
scores, the model's own activation applied). Lines run as records in batches like every task; the writer
(tfx.outputs) puts them best first."""

from __future__ import annotations

from tfx.errors import RecordError, UsageError
from tfx.registry import CROSS_ENCODER_MODEL
from tfx.results import RankResult
from tfx.spec import RankSettings
from tfx.tasks.base import Task, input_limit
from tfx.tasks.embed import TokenCount, plain_model_note


class RankInputs(Task):
    """What rank does around the model, on every backend (this one and tfx.tasks.onnx_sentence): the query,
    the cross-encoder's one-score check, each record's inputs, check and cost, the results with their
    truncation; a subclass loads the model, calls `_take` and computes `scores(texts)`."""

    name = "rank"
    batch_sizes = (32, 128)

    def _take(self, loaded, settings: RankSettings, tokenizer, limit: int | None, num_labels: int = 1) -> None:
        self.query = settings.query
        self.cross = settings.cross_encoder
        if self.cross and num_labels != 1:
            raise UsageError(f"{loaded.name} gives {num_labels} scores per pair; rank needs a cross-encoder with one.", f"Use e.g. {CROSS_ENCODER_MODEL}.")
        if not self.cross:
            plain_model_note(loaded)
        self.limit = limit or input_limit(loaded)
        self.tokens = TokenCount(tokenizer, self.limit, not settings.no_truncate)

    def inputs_of(self, text: str) -> tuple[str, ...]:
        return (self.query, text) if self.cross else (text,)

    def cost(self, text: str) -> int:
        return self.tokens.count(text)

    def check(self, text: str) -> None:
        if not isinstance(text, str):
            raise RecordError("rank takes one text per record")
        self.tokens.check(*self.inputs_of(text))

    def scores(self, texts: list[str]) -> list[float]:
        raise NotImplementedError

    def run(self, texts: list[str]) -> list[RankResult]:
        results = []
        for text, score in zip(texts, self.scores(texts)):
            cut = self.tokens.over(*self.inputs_of(text))
            results.append(RankResult(text, cut > 0, score=score, dropped_tokens=cut))
        return results


class Rank(RankInputs):
    def __init__(self, loaded, settings: RankSettings):
        super().__init__(loaded, settings)
        self.model = loaded.model
        self._take(loaded, settings, self.model.tokenizer, self.model.max_seq_length, getattr(self.model, "num_labels", 1) if settings.cross_encoder else 1)
        self.query_vector = None
        if not self.cross:
            self.query_vector = self.model.encode_query([self.query], show_progress_bar=False, convert_to_tensor=True)

    def scores(self, texts: list[str]) -> list[float]:
        if self.cross:
            scores = self.model.predict([(self.query, t) for t in texts], batch_size=len(texts), show_progress_bar=False, convert_to_tensor=True)
            return scores.float().view(len(texts), -1)[:, 0].cpu().tolist()
        from sentence_transformers.util import cos_sim

        docs = self.model.encode_document(texts, batch_size=len(texts), show_progress_bar=False, convert_to_tensor=True)
        return cos_sim(self.query_vector, docs)[0].float().cpu().tolist()
