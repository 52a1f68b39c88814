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
    always: ClassVar[tuple[str, ...]] = ()  # fields written even when 0 or empty

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
    always: ClassVar[tuple[str, ...]] = ("generated_tokens",)

    def text(self) -> str:
        """Several sequences stay in one record, tab-separated."""
        return "\t".join(self.outputs) if self.outputs else self.output

    @property
    def tokens(self) -> int:
        return self.generated_tokens


@dataclass
class FillMaskResult(Result):
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
    """A piece of a streamed generation, as it is decoded."""

    text: str


RESULTS: dict[str, type[Result]] = {
    "generate": GenerateResult,
    "fill-mask": FillMaskResult,
    "translate": Seq2SeqResult,
    "summarize": Seq2SeqResult,
}


def from_record(task: str, record: dict[str, Any], listing: bool = False) -> Result:
    """A jsonl record (the server's answer) back into the task's result."""
    result = RESULTS[task].from_record(record)
    if isinstance(result, FillMaskResult):
        result.listing = listing
    return result
