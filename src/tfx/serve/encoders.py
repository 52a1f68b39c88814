"""The encoder endpoints in the shapes other tools speak: OpenAI's `POST /v1/embeddings` (input a string or
a list of strings, encoding_format float or base64, dimensions, usage) and the rerank API of Jina, Cohere
and llama.cpp (`POST /v1/rerank`: query, documents, top_n, return_documents -> results best first with
index and relevance_score). Both run tfx's own embed and rank tasks on the server's batcher, so their
numbers are those of `tfx embed` and `tfx rank`; a rerank model that is a cross-encoder scores each
(query, document) pair, any other sentence model scores by cosine."""

from __future__ import annotations

import base64
from typing import Any, Literal, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tfx import pipeline
from tfx.errors import TaskMismatch
from tfx.serve import limits
from tfx.serve.http import ApiError, answered, body_schema, note, read_json, state, unless_gone
from tfx.spec import EmbedSettings, RankSettings

router = APIRouter()


class EmbeddingsRequest(BaseModel):
    """OpenAI's body. Unknown fields are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    model: Optional[str] = Field(None, min_length=1)
    input: Union[str, list[str], list[int], list[list[int]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, ge=1)
    user: Optional[str] = None


class Document(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    text: str


class RerankRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    model: Optional[str] = Field(None, min_length=1)
    query: str = Field(min_length=1)
    documents: list[Union[str, Document]] = Field(min_length=1)
    top_n: Optional[int] = Field(None, ge=1)
    return_documents: bool = False


def encoded(vector: Any, encoding: str) -> list[float] | str:
    """float: a list; base64: the little-endian float32 bytes, as OpenAI sends them."""
    import numpy as np

    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return np.asarray(vector, dtype="float32").tolist()


def count_tokens(task, text: str, result) -> int:
    """Usage: the tokens the model read for one input (the batcher's finish hook, on the model's thread)."""
    inputs = tuple(pipeline.clip(task, t)[0] for t in (task.inputs_of(text) if hasattr(task, "inputs_of") else (text,)))  # what the model read
    return min(len(task.model.tokenizer(*inputs)["input_ids"]), task.limit)


def usage(outcomes) -> dict[str, int]:
    tokens = sum(o.extra or 0 for o in outcomes)
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def refuse_errors(texts: list[str], outcomes, param: str) -> None:
    for i, outcome in enumerate(outcomes):
        if outcome.error is not None:
            raise ApiError(400, f"{param}[{i}]: {outcome.error}", "invalid_input", param)


@router.post("/v1/embeddings", openapi_extra=body_schema(EmbeddingsRequest))
@answered
async def embeddings(request: Request):
    settings, manager = state(request)
    body: EmbeddingsRequest = await read_json(request, EmbeddingsRequest, settings.max_body_bytes)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise ApiError(400, "input is empty", "invalid_input", "input")
    if not all(isinstance(t, str) for t in texts):
        raise ApiError(400, "input: token arrays are not supported, send the text", "unsupported_parameter", "input")
    if any(not t.strip() for t in texts):
        raise ApiError(400, "input holds an empty string", "invalid_input", "input")
    limits.check_inputs(len(texts), settings, "input")
    wanted = EmbedSettings(dimensions=body.dimensions)
    name = body.model or wanted.default_model("embed")
    note(request, model=name)
    slot, _ = await manager.slot_for(name, "embed")
    outcomes = await unless_gone(request, slot.run("embed", wanted, texts, count_tokens))
    refuse_errors(texts, outcomes, "input")
    data = [{"object": "embedding", "index": i, "embedding": encoded(o.result.embedding, body.encoding_format)} for i, o in enumerate(outcomes)]
    used = usage(outcomes)
    note(request, tokens=used["total_tokens"])
    return JSONResponse({"object": "list", "data": data, "model": name, "usage": used})


@answered
async def rerank(request: Request):
    settings, manager = state(request)
    body: RerankRequest = await read_json(request, RerankRequest, settings.max_body_bytes)
    docs = [d if isinstance(d, str) else d.text for d in body.documents]
    if any(not d.strip() for d in docs):
        raise ApiError(400, "documents holds an empty string", "invalid_input", "documents")
    limits.check_inputs(len(docs), settings, "documents")
    wanted, slot, name = await scorer(manager, body.model, body.query)
    note(request, model=name)
    outcomes = await unless_gone(request, slot.run("rank", wanted, docs, count_tokens))
    refuse_errors(docs, outcomes, "documents")
    order = sorted(range(len(docs)), key=lambda i: -outcomes[i].result.score)[: body.top_n]
    results = []
    for i in order:
        results.append({"index": i, "relevance_score": outcomes[i].result.score})
        if body.return_documents:
            results[-1]["document"] = {"text": docs[i]}
    used = usage(outcomes)
    note(request, tokens=used["total_tokens"])
    return JSONResponse({"object": "list", "model": name, "results": results, "usage": used})


async def scorer(manager, model: str | None, query: str):
    """A cross-encoder where the model is one (the default is), else cosine of its embeddings."""
    for cross in (True, False):
        wanted = RankSettings(query=query, cross_encoder=cross)
        name = model or wanted.default_model("rank")
        try:
            slot, _ = await manager.slot_for(name, "rank", None, wanted.variant())
        except TaskMismatch:
            if not cross or model is None:
                raise
            continue
        return wanted, slot, name
    raise AssertionError("unreachable")


for _path in ("/v1/rerank", "/rerank"):  # Jina's and Cohere's path, and llama.cpp's
    router.add_api_route(_path, rerank, methods=["POST"], openapi_extra=body_schema(RerankRequest), name="rerank" + _path.replace("/", "_"))
