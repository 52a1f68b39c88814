"""What the server has: `GET /health` (a liveness probe without the key; the details with it), OpenAI's
`GET /v1/models` (models.list) and `GET /v1/models/{id}` (models.retrieve), aliases (--alias) under their own
names."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from tfx import __version__, registry
from tfx.serve.http import ApiError, answered, authorized, state

router = APIRouter()


@router.get("/health")
@answered
async def health(request: Request) -> dict[str, Any]:
    settings, manager = state(request)
    if not authorized(request, settings.api_key):  # a liveness probe needs no more, and no key
        return {"status": "ok"}
    return {
        "status": "ok",
        "version": __version__,
        "device": manager.device,
        "uptime_s": round(time.time() - manager.started, 1),
        "models": manager.models(),
        **manager.stats,
    }


def model_rows(manager) -> list[dict[str, Any]]:
    created = int(manager.started)
    rows = []
    for m in manager.models():
        tasks = list(registry.tasks_for_class(m["head"])) if m["head"] is not None else []
        rows.append({"id": m["id"], "object": "model", "created": created, "owned_by": "tfx", "loaded": m["loaded"], "tasks": tasks})
    return rows


@router.get("/v1/models")
@answered
async def list_models(request: Request) -> dict[str, Any]:
    _, manager = state(request)
    return {"object": "list", "data": model_rows(manager)}


@router.get("/v1/models/{model:path}")
@answered
async def retrieve_model(request: Request, model: str) -> dict[str, Any]:
    _, manager = state(request)
    for row in model_rows(manager):
        if row["id"] == model:
            return row
    shown = model[:200].encode("unicode_escape").decode("ascii")
    raise ApiError(404, f"the server has no model '{shown}': GET /v1/models lists the ones it has", "model_not_found", "model")
