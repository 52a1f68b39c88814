"""embed: sentence embeddings through sentence-transformers, the library made for them.

The model's own modules.json decides pooling and normalisation (loading builds a SentenceTransformer from
the snapshot); a plain transformers model, which has none, gets sentence-transformers' mean pooling and a
note on stderr. --no-normalize runs the model without its Normalize module, --normalize adds unit length
where the model has none, and --dimensions N keeps the first N numbers (Matryoshka models), normalised
again after the cut when the vectors are to be unit length. Each batch is one SentenceTransformer.encode
call, so the numbers are those of encode."""

from __future__ import annotations

from tfx.errors import RecordError, UsageError
from tfx.results import EmbedResult
from tfx.spec import EmbedSettings
from tfx.tasks.base import Task, input_limit, log, too_long


def has_normalize(model) -> bool:
    from sentence_transformers.base.modules import Normalize

    return any(isinstance(m, Normalize) for m in model.children())


def without_normalize(model):
    """The same modules (shared, not copied) minus Normalize, for --no-normalize; the loaded model is shared
    by every task on a server, so it is never changed itself."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize

    kept = [m for m in model.children() if not isinstance(m, Normalize)]
    view = SentenceTransformer(modules=kept, device=str(model.device), prompts=dict(model.prompts), default_prompt_name=model.default_prompt_name)
    view.eval()
    return view


def plain_model_note(loaded) -> None:
    if not (loaded.path / "modules.json").is_file():
        log.warning("%s has no sentence-transformers modules (modules.json): its embeddings are the mean of its token vectors", loaded.name)


class TokenCount:
    """How many tokens an input is, for the truncation report: only long inputs are tokenized twice."""

    def __init__(self, tokenizer, limit: int, truncate: bool):
        self.tokenizer, self.limit, self.truncate = tokenizer, limit, truncate

    def count(self, *texts: str) -> int:
        """The input's length in tokens (the pipeline sorts by it: batches of equal token counts pad least;
        sentence-transformers sorts by characters)."""
        return min(len(self.tokenizer(*texts)["input_ids"]), self.limit)

    def over(self, *texts: str) -> int:
        """Tokens past the limit (0 when it fits)."""
        if sum(len(t.encode("utf-8")) for t in texts) + 2 * len(texts) + 2 <= self.limit:
            return 0  # every token is at least one byte
        n = len(self.tokenizer(*texts)["input_ids"])
        return max(0, n - self.limit)

    def check(self, *texts: str) -> None:
        if not self.truncate:
            extra = self.over(*texts)
            if extra:
                raise too_long("model's input", self.limit + extra, self.limit)


class EmbedInputs(Task):
    """What embed does around the model, on every backend (this one and tfx.tasks.onnx_sentence): the
    --dimensions check, the records' check and cost, the results with their truncation; a subclass loads the
    model, calls `_take` and computes `vectors(texts)` (float32 rows, cut and normalised as asked)."""

    name = "embed"
    batch_sizes = (32, 128)
    window_batches = 32  # records sorted by length together (pipeline.window_batches): less padding

    def _take(self, loaded, settings: EmbedSettings, tokenizer, limit: int | None, size: int | None) -> None:
        self.dimensions = settings.dimensions
        if self.dimensions is not None and size is not None and self.dimensions > size:
            raise UsageError(f"--dimensions {self.dimensions} is more than {loaded.name}'s {size}.", f"Use at most --dimensions {size}.")
        self.limit = limit or input_limit(loaded)
        self.tokens = TokenCount(tokenizer, self.limit, not settings.no_truncate)

    def check(self, text: str) -> None:
        if not isinstance(text, str):
            raise RecordError("embed takes one text per record")
        self.tokens.check(text)

    def cost(self, text: str) -> int:
        return self.tokens.count(text)

    def vectors(self, texts: list[str]):
        raise NotImplementedError

    def run(self, texts: list[str]) -> list[EmbedResult]:
        results = []
        for text, row in zip(texts, self.vectors(texts)):
            cut = self.tokens.over(text)
            results.append(EmbedResult("", cut > 0, embedding=row, dropped_tokens=cut))
        return results


def dimension(model) -> int | None:
    """A SentenceTransformer's embedding size (the method's name changed in sentence-transformers 5)."""
    return model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else model.get_sentence_embedding_dimension()


class Embed(EmbedInputs):
    def __init__(self, loaded, settings: EmbedSettings):
        super().__init__(loaded, settings)
        model = loaded.model
        plain_model_note(loaded)
        own = has_normalize(model)
        self.normalize = own if settings.normalize is None else settings.normalize
        self.model = without_normalize(model) if own and not self.normalize else model
        self._take(loaded, settings, model.tokenizer, model.max_seq_length, dimension(model))

    def vectors(self, texts: list[str]):
        vectors = self.model.encode(
            texts, batch_size=len(texts), show_progress_bar=False, convert_to_tensor=True,
            normalize_embeddings=self.normalize, truncate_dim=self.dimensions,
        )  # fmt: skip
        return vectors.float().cpu().numpy()
