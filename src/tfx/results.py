"""What tasks return: small dataclasses, one per task, plus the chunks a streamed generation yields.
Each knows its jsonl fields (`record`) and its one-line text form (`text`); io decides which is written.
Imports nothing heavy, so the --server client and the server's routes use them too."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass
class Result:
    output: str = ""
    truncated: bool = False  # the input was longer than the model takes, and was cut
    # How much was cut (tasks and the pipeline set them; the pipeline reports them on stderr, naming the
    # record). Keyword-only, so every result's own fields keep their positions.
    dropped_tokens: int = field(default=0, kw_only=True)  # tokens cut off after tokenizing
    dropped_chars: int = field(default=0, kw_only=True)  # characters cut off before tokenizing (pipeline.clip)
    always: ClassVar[tuple[str, ...]] = ()  # fields written even when 0 or empty
    columns: ClassVar[tuple[str, ...]] = ()  # the header of `table()`'s rows

    def record(self) -> dict[str, Any]:
        """The task's fields of a jsonl record (io adds input and model)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "output" or f.name in self.always or value not in (None, False, 0):
                out[f.name] = value
        return out

    def text(self) -> str:
        return self.output

    def table(self) -> list[tuple[str, ...]] | None:
        """Rows for a terminal table, or None where this result shows no table."""
        return None

    @property
    def tokens(self) -> int:
        return 0

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Result:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


@dataclass
class GenerateResult(Result):
    outputs: list[str] | None = None  # several sequences (-n), the first being `output`
    generated_tokens: int = 0
    # --logprobs: one list per returned sequence (outputs' order), one entry per generated token of its text:
    # {"token", "id", "logprob", "bytes", "top_logprobs": [{"token", "id", "logprob", "bytes"}, ...]} (tfx.tasks.logprobs)
    logprobs: list[list[dict[str, Any]]] | None = None
    # --json / --json-schema: per sequence, "stop" (it ended itself: the end-of-sequence token once the JSON was
    # complete, or a stop string) or "length" (max_new_tokens ran out first); incomplete: some sequence's JSON
    # is unfinished (cut by max_new_tokens or a stop string)
    finish_reasons: list[str] | None = None
    incomplete: bool = False
    always: ClassVar[tuple[str, ...]] = ("generated_tokens",)

    def text(self) -> str:
        """Several sequences stay in one record, tab-separated."""
        return "\t".join(self.outputs) if self.outputs else self.output

    def logprobs_of(self, index: int) -> list[dict[str, Any]] | None:
        """The token entries of sequence `index` (0: `output`), or None where logprobs were not asked."""
        return self.logprobs[index] if self.logprobs is not None and index < len(self.logprobs) else None

    @property
    def tokens(self) -> int:
        return self.generated_tokens


def logprobs_within(entries: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The entries of the tokens that lie inside `text`, a prefix of their joined bytes (a server that cuts a
    sequence at a stop string keeps these; a token the cut goes through is kept)."""
    limit, used, out = len(text.encode("utf-8")), 0, []
    for entry in entries:
        if used >= limit and out:
            break
        out.append(entry)
        used += len(entry["bytes"])
    return out if limit else []


@dataclass
class FillMaskResult(Result):
    columns: ClassVar[tuple[str, ...]] = ("mask", "rank", "token", "score")
    predictions: list[list[dict[str, Any]]] = field(default_factory=list)  # per mask: token, score, token_id
    listing: bool = False  # --top-k was asked: show the candidates, not the sentence

    def record(self) -> dict[str, Any]:
        out = super().record()
        out.pop("listing", None)
        out["predictions"] = self.predictions
        return out

    def text(self) -> str:
        """--top-k on a pipe: one line per record, token<TAB>score for each candidate, mask after mask."""
        if not self.listing:
            return self.output
        return "\t".join(f"{c['token']}\t{c['score']:.4f}" for preds in self.predictions for c in preds)

    def table(self) -> list[tuple[str, ...]] | None:
        if not self.listing:
            return None
        rows = []
        for m, preds in enumerate(self.predictions, 1):
            rows += [(str(m), str(r), c["token"], f"{c['score']:.4f}") for r, c in enumerate(preds, 1)]
        return rows


@dataclass
class Seq2SeqResult(Result):
    generated_tokens: int = 0
    chunks: int = 0  # summarize: the input was longer than the model's context, summarised in this many parts
    cut_sentences: int = 0  # translate: sentences longer than the model's context, cut at token boundaries
    always: ClassVar[tuple[str, ...]] = ("generated_tokens",)

    @property
    def tokens(self) -> int:
        return self.generated_tokens


@dataclass
class Failed(Result):
    """A record the model side refused (the server's answer for one bad input of a batch)."""

    error: str = ""


@dataclass
class TextChunk:
    """A piece of a streamed generation, as it is decoded; with --logprobs, the entries of the tokens whose
    text it holds (as GenerateResult.logprobs's)."""

    text: str
    logprobs: list[dict[str, Any]] | None = None


@dataclass
class ClassifyResult(Result):
    """output: the best label; labels: [{"label", "score"}], best first (top-k of them)."""

    labels: list[dict[str, Any]] = field(default_factory=list)
    always: ClassVar[tuple[str, ...]] = ("labels",)
    columns: ClassVar[tuple[str, ...]] = ("rank", "label", "score")

    def text(self) -> str:
        return "\t".join(f"{c['label']}\t{c['score']:.4f}" for c in self.labels)

    def table(self) -> list[tuple[str, ...]] | None:
        return [(str(r), c["label"], f"{c['score']:.4f}") for r, c in enumerate(self.labels, 1)]


@dataclass
class NerResult(Result):
    """entities: [{"word", "label", "score", "start", "end"}], offsets into the input text (word is
    text[start:end]); output: "word/LABEL" for each, two spaces apart (tsv's output column)."""

    entities: list[dict[str, Any]] = field(default_factory=list)
    always: ClassVar[tuple[str, ...]] = ("entities",)
    columns: ClassVar[tuple[str, ...]] = ("word", "label", "score", "start", "end")

    def text(self) -> str:
        """One record per input line: the entities joined on one line, word<TAB>label<TAB>score each."""
        return "\t".join(f"{e['word']}\t{e['label']}\t{e['score']:.4f}" for e in self.entities)

    def table(self) -> list[tuple[str, ...]] | None:
        return [(e["word"], e["label"], f"{e['score']:.4f}", str(e["start"]), str(e["end"])) for e in self.entities]


@dataclass
class QaResult(Result):
    """output: the answer ("" when the model says there is none); start/end: offsets into the context."""

    score: float = 0.0
    start: int | None = None
    end: int | None = None
    answers: list[dict[str, Any]] | None = None  # --top-k: [{"answer", "score", "start", "end"}], best first
    always: ClassVar[tuple[str, ...]] = ("score", "start", "end")
    columns: ClassVar[tuple[str, ...]] = ("rank", "answer", "score", "start", "end")

    def text(self) -> str:
        """--top-k on a pipe: answer<TAB>score for each, best first, on one line."""
        if self.answers is None:
            return self.output
        return "\t".join(f"{a['answer']}\t{a['score']:.4f}" for a in self.answers)

    def table(self) -> list[tuple[str, ...]] | None:
        if self.answers is None:
            return None
        return [(str(r), a["answer"], f"{a['score']:.4f}", str(a["start"]), str(a["end"])) for r, a in enumerate(self.answers, 1)]


def _floats(values: Any) -> list[float]:
    """A vector as a list of floats (tasks hand over numpy rows; a server's answer has lists)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


@dataclass
class EmbedResult(Result):
    """embedding: the vector (a float32 numpy row from the task, a list from the server)."""

    embedding: Any = field(default_factory=list)
    always: ClassVar[tuple[str, ...]] = ("embedding",)

    def record(self) -> dict[str, Any]:
        out = super().record()
        out.pop("output", None)  # an embedding has no text output
        out["embedding"] = _floats(self.embedding)
        return out

    def text(self) -> str:
        """The numbers, space-separated, each as exact as the jsonl record's."""
        return " ".join(map(repr, _floats(self.embedding)))


@dataclass
class RankResult(Result):
    """One input line's relevance to the query; the writer puts the lines best first and sets `index`,
    the line's place in the input (0-based)."""

    score: float = 0.0
    index: int | None = None
    always: ClassVar[tuple[str, ...]] = ("score",)

    def record(self) -> dict[str, Any]:
        out = super().record()
        out.pop("output", None)
        if self.index is not None:
            out["index"] = self.index
        return out

    def text(self) -> str:
        return f"{self.score:.4f}\t{self.output}"


RESULTS: dict[str, type[Result]] = {
    "generate": GenerateResult,
    "fill-mask": FillMaskResult,
    "translate": Seq2SeqResult,
    "summarize": Seq2SeqResult,
    "classify": ClassifyResult,
    "ner": NerResult,
    "qa": QaResult,
    "embed": EmbedResult,
    "rank": RankResult,
}


def from_record(task: str, record: dict[str, Any], listing: bool = False) -> Result:
    """A jsonl record (the server's answer) back into the task's result."""
    result = RESULTS[task].from_record(record)
    if isinstance(result, FillMaskResult):
        result.listing = listing
    return result
