"""OpenAI's decoding extras on the generate task's settings, and back: `logprobs` / `top_logprobs` (chat),
`logprobs=N` (completions), `response_format` (json_object, json_schema) and the Responses API's
`text.format`, as GenerateSettings' logprobs / json_object / json_schema; and the per-token log
probabilities of a result in the shapes of completions, chat and responses."""

from __future__ import annotations

import json
from typing import Any

from tfx.errors import UsageError
from tfx.results import logprobs_within
from tfx.serve.http import ApiError
from tfx.settings import schema_field
from tfx.settings.tasks import MAX_TOP_LOGPROBS
from tfx.spec import GenerateSettings
from tfx.tasks import constrain



def has(name: str) -> bool:
    """Whether the generate task takes this setting (logprobs, json_object, json_schema)."""
    return schema_field(GenerateSettings, name) is not None


def logprob_params(top: int | None, param: str) -> dict[str, Any]:
    """top: None (no log probabilities), or how many alternatives per token (0: the chosen token's only)."""
    if top is None:
        return {}
    if not has("logprobs"):
        raise ApiError(400, f"{param} is not supported by tfx serve", "unsupported_parameter", param)
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"{param} must be between 0 and {MAX_TOP_LOGPROBS} (got {top})", "invalid_parameter", param)
    return {"logprobs": top}


def format_params(fmt: dict[str, Any] | None, param: str) -> dict[str, Any]:
    """response_format ({"type": "text" | "json_object" | "json_schema", "json_schema": {name, schema,
    strict}}) or the Responses API's text.format (the json_schema's fields one level up)."""
    if not fmt or fmt.get("type") in (None, "text"):
        return {}
    kind = fmt.get("type")
    if kind not in ("json_object", "json_schema"):
        raise ApiError(400, f"{param}.type is {str(kind)[:40]!r}: tfx serve takes text, json_object or json_schema", "invalid_parameter", param)
    if not has("json_object"):
        raise ApiError(400, f"{param} {kind} is not supported by tfx serve", "unsupported_parameter", param)
    if kind == "json_object":
        return {"json_object": True}
    spec = fmt.get("json_schema", fmt)  # chat nests it; responses does not
    body = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(body, dict):
        raise ApiError(400, f"{param}: json_schema needs a schema (a JSON Schema object)", "invalid_parameter", param)
    schema = json.dumps(body)
    problem = schema_problem(schema)
    if problem:
        raise ApiError(400, f"{param}: the json_schema is a schema tfx cannot follow: {problem}; use the JSON Schema subset of OpenAI's structured outputs", "invalid_parameter", param)
    return {"json_schema": schema}


def schema_problem(schema: str) -> str | None:
    """Why the grammar library cannot follow the schema, found before anything loads (None: it can, or
    xgrammar is not installed, which the generate task reports itself)."""
    try:
        return constrain.schema_problem(schema)
    except UsageError:
        return None


# --- an outcome's tail, and its log probabilities in OpenAI's shapes -------------------------------------


def settle(shape: Any, outcome: Any, index: int = 0) -> list[tuple[str, str, list | None]]:
    """The tail every generation endpoint's answer shares (completions, chat, responses; whole or at the
    end of a stream): count the outcome of prompt `index` into the shape's usage, then give its sequences
    as (text cut at the first stop string, finish reason, logprob entries). None (a cancelled stream): []."""
    if outcome is None:
        return []
    shape.count(outcome.result, outcome.extra, index)
    return shape.sequences(outcome.result, outcome.extra)


def tokens_of(result: Any, index: int, text: str) -> list | None:
    """The token entries of the result's sequence `index` that lie inside `text` (the sequence cut at a
    stop string), when logprobs were asked (GenerateResult.logprobs: tfx.tasks.logprobs' entries)."""
    of = getattr(result, "logprobs_of", None)
    entries = of(index) if of is not None else None
    return None if entries is None else logprobs_within(entries, text)


def _openai(entry: dict[str, Any]) -> dict[str, Any]:
    return {"token": entry["token"], "logprob": entry["logprob"], "bytes": list(entry["bytes"])}


def chat_content(tokens: list | None) -> list[dict[str, Any]] | None:
    """Chat's and the Responses API's [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]."""
    if tokens is None:
        return None
    return [{**_openai(t), "top_logprobs": [_openai(a) for a in t.get("top_logprobs") or []]} for t in tokens]


def completion_logprobs(tokens: list | None, start: int = 0) -> dict[str, Any] | None:
    """Completions' {tokens, token_logprobs, top_logprobs, text_offset}."""
    if tokens is None:
        return None
    offsets, at = [], start
    for t in tokens:
        offsets.append(t.get("text_offset", at))  # a streamed chunk's entries carry theirs
        at += len(t["token"])
    return {
        "tokens": [t["token"] for t in tokens],
        "token_logprobs": [t["logprob"] for t in tokens],
        "top_logprobs": [{a["token"]: a["logprob"] for a in t.get("top_logprobs") or []} for t in tokens],
        "text_offset": offsets,
    }


class StreamedTokens:
    """The log-probability entries of one streamed sequence, handed out with the text they make: a piece's
    entries wait (as its text may, held back where a stop string may begin) until that text has gone out,
    each with its text_offset; `rest` gives what the whole result holds beyond them, so the chunks' entries
    join to the non-streamed list. None throughout when logprobs were not asked."""

    def __init__(self) -> None:
        self.wanted = False
        self.waiting: list[dict[str, Any]] = []
        self.sent = 0  # entries handed out
        self.text_bytes = 0  # bytes of the text sent
        self.token_bytes = 0  # bytes of the entries handed out
        self.offset = 0

    def add(self, piece: Any) -> None:
        entries = getattr(piece, "logprobs", None)
        if entries is not None:
            self.wanted = True
            self.waiting.extend(entries)

    def out(self, text: str) -> list[dict[str, Any]] | None:
        """The entries of the tokens inside the text sent so far (a token the text ends inside goes out)."""
        self.text_bytes += len(text.encode("utf-8"))
        if not self.wanted:
            return None
        out = []
        while self.waiting and self.token_bytes < self.text_bytes:
            entry = self.waiting.pop(0)
            self.token_bytes += len(entry["bytes"])
            out.append(self._placed(entry))
        return out

    def rest(self, result: Any, text: str) -> list[dict[str, Any]] | None:
        """The result's entries for `text` (the whole sequence as sent) past those already handed out."""
        full = tokens_of(result, 0, text)
        if full is None:
            return None
        return [self._placed(entry) for entry in full[self.sent :]]

    def _placed(self, entry: dict[str, Any]) -> dict[str, Any]:
        placed = {**entry, "text_offset": self.offset}
        self.offset += len(entry["token"])
        self.sent += 1
        return placed
