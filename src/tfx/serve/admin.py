"""What `tfx ps` and `tfx stop` ask a running server (as ollama's ps and stop):

    GET  /v1/ps                      the models the server has, one row per loaded-or-ready model
    POST /v1/unload {"model": NAME}  unload it now (404: a model the server does not have); the next
                                     request that needs it loads it again

Both behind the API key, like every route but /health."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tfx import ct2, registry
from tfx.serve.http import ApiError, answered, body_schema, read_json, state
from tfx.serve.metrics import memory_bytes

router = APIRouter()

MAX_BODY = 4096


class UnloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=1000)


def rows(manager) -> list[dict[str, Any]]:
    """One row per slot (a snapshot and head class on one backend), the names it answers to first."""
    now = time.monotonic()
    listed = []
    for slot in list(manager.slots.values()):
        loaded = slot.loaded
        tasks = registry.tasks_for_class(slot.head)
        if slot.backend == "ct2":
            tasks = tuple(t for t in tasks if t in ct2.MODEL_TYPES.get(slot.prepared.model_type, ()))
        listed.append({
            "id": slot.prepared.name,
            "names": sorted(slot.names),
            "head": slot.head,
            "tasks": list(tasks),
            "backend": slot.backend,
            "loaded": loaded is not None,
            "device": loaded.device if loaded is not None else None,
            "memory_bytes": memory_bytes(loaded) if loaded is not None else 0,
            "idle_s": round(now - slot.last_used, 1),
            "requests": slot.served,
            "pending": slot.pending,
        })  # fmt: skip
    return listed


@router.get("/v1/ps")
@answered
async def ps(request: Request) -> dict[str, Any]:
    _, manager = state(request)
    return {"object": "list", "device": manager.device, "data": rows(manager)}


@router.post("/v1/unload", openapi_extra=body_schema(UnloadRequest))
@answered
async def unload(request: Request) -> dict[str, Any]:
    _, manager = state(request)
    body: UnloadRequest = await read_json(request, UnloadRequest, MAX_BODY)
    name = manager.name_of(body.model)
    slots = [slot for slot in list(manager.slots.values()) if body.model in slot.names or name in slot.names]
    if not slots:
        raise ApiError(404, f"the server has no model {body.model!r}: tfx ps lists the ones it has", "model_not_found", "model")
    was_loaded = [slot.loaded is not None for slot in slots]
    waits = []
    for slot in slots:
        try:  # on the slot's own thread, behind the work already queued there
            waits.append(asyncio.wrap_future(slot.executor.submit(slot.unload_if_idle, 0.0, True, "(tfx stop)")))
        except RuntimeError:  # shutting down
            pass
    await asyncio.gather(*waits)
    return {"model": body.model, "unloaded": any(was_loaded), "loaded": any(slot.loaded is not None for slot in slots)}
