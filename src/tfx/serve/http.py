"""What every route of tfx serve shares about HTTP: the server's one catch point (`describe`, any exception ->
status and an OpenAI-style error body), reading a JSON body within its size limit (`read_json`), the API key
(`authorized`), work dropped when its client leaves (`unless_gone`), server-sent events' errors, the OpenAPI
description of a body a route reads itself (`body_schema`), and a route's server state (`state`). Bad input
always gets a 4xx; a 500 means a bug in tfx. Imports of tfx.serve: only the bottom modules (work, events).

A route module exposes `router = APIRouter()`, takes the settings and the manager from the request
(`settings, manager = state(request)`), wraps each route in `answered`, and documents its body with
`openapi_extra=body_schema(Model)`; app.py only includes the routers."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from tfx.errors import ModelNotFound, RecordError, TaskMismatch, TfxError
from tfx.explain import explain
from tfx.serve.events import SSE_DONE, sse  # noqa: F401 - SSE_DONE: for the routes, with sse_error
from tfx.serve.work import QueueFull

log = logging.getLogger("tfx")

BATCH_HEADER = "x-tfx-batch-size"  # inputs in the largest model batch this request's inputs ran in
RETRY_AFTER_S = 1  # what a client told the queue is full waits before trying again
MODEL_KEY = "tfx_model"  # request.state.tfx_model: the model a request named (metrics, the access log)
TOKENS_KEY = "tfx_tokens"  # request.state.tfx_tokens: the tokens its answer read and made (the access log)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind


class LimitError(ApiError):
    """A request over one of the server's limits (serve.limits)."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(status, message, code, param)


class ClientGone(Exception):
    """The client disconnected (while its work waited, or while it sent its body): nobody reads the answer."""


def error_body(message: str, kind: str, code: str, param: str | None = None, tfx: TfxError | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": kind, "param": param, "code": code}
    if tfx is not None:  # what `tfx ... --server` needs to print the error a local run would
        error["tfx"] = {"message": tfx.message, "hint": tfx.hint, "exit_code": tfx.exit_code}
    return {"error": error}


def describe(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The server's one catch point: any exception -> (HTTP status, JSON error body). Library exceptions
    are explained by the one table (tfx.explain), each kind of TfxError carries its status and code; an
    exception nobody knows is a bug in tfx: 500, and logged."""
    if isinstance(exc, ApiError):
        return exc.status, error_body(exc.message, exc.kind, exc.code, exc.param)
    if isinstance(exc, (ClientGone, ClientDisconnect)):  # nobody reads this answer; 499 as nginx logs it
        return 499, error_body("the client disconnected before its answer was ready", "invalid_request_error", "client_closed_request")
    if isinstance(exc, RecordError):
        return 400, error_body(str(exc), "invalid_request_error", "invalid_input", None, TfxError(str(exc)))
    error = explain(exc)
    if error is not None:
        kind = "server_error" if error.http_status >= 500 else "invalid_request_error"
        param = "model" if isinstance(error, (ModelNotFound, TaskMismatch)) else None
        return error.http_status, error_body(str(error), kind, error.code, param, error)
    log.error("internal error", exc_info=exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return 500, error_body(f"internal error: {type(exc).__name__}: {first}", "server_error", "internal_error")


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    status, body = describe(exc)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, QueueFull):
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse(body, status_code=status, headers=headers or None)


def answered(route):
    """A route whose every exception is answered by `describe` (a bug is logged there, once)."""

    @functools.wraps(route)
    async def run(*args, **kwargs):
        try:
            return await route(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the server's one catch point
            return error_response(exc)

    return run


def sse_error(exc: BaseException | str) -> str:
    """An error after a stream's headers went out: one last event."""
    _, body = describe(RecordError(exc) if isinstance(exc, str) else exc)
    return sse(body)


def state(request: Request) -> tuple[Any, Any]:
    """The server's settings (serve.config.Settings) and its model manager (serve.models.Manager)."""
    return request.app.state.settings, request.app.state.manager


def note(request: Request, model: str | None = None, tokens: int | None = None) -> None:
    """What the access log and /metrics say about this request: the model it named, the tokens it cost."""
    if model is not None:
        request.state.tfx_model = model
    if tokens is not None:
        request.state.tfx_tokens = tokens


async def unless_gone(request: Request, work):
    """Await work (a slot's run) unless the client disconnects first; then cancel it, so a batch that has
    not started drops its inputs and a running one stops once none of its inputs is wanted (serve.cancel)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientGone()
    return task.result()


def authorized(request: Request, key: str | None) -> bool:
    """No key on the server, or the right Bearer key (constant time), as serve.security checks it."""
    if not key:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def read_json(request: Request, schema: type[BaseModel], limit: int) -> Any:
    """The body, at most `limit` bytes, parsed and validated against schema. A bad body is a 400 naming the
    field as the client sent it; a client that leaves while sending is a 499 (one access-log line)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is over the server's limit of {limit} bytes", "request_too_large")
    body, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the request body is over the server's limit of {limit} bytes", "request_too_large")
            body.append(chunk)
    except ClientDisconnect:
        log.debug("%s %s: the client disconnected while sending its body", request.method, request.url.path)
        raise ClientGone() from None
    try:
        parsed = schema.model_validate_json(b"".join(body))
    except ValidationError as exc:
        raise validation_error(exc) from None
    note(request, model=getattr(parsed, "model", None))
    return parsed


def validation_error(exc: ValidationError) -> ApiError:
    """pydantic's first complaint as OpenAI answers a bad body: 400, the field's path as the body spells it."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return ApiError(400, f"the body is not valid JSON: {first['msg']}", "invalid_json")
    parts = [p for p in first["loc"] if not _is_type_tag(p)]
    field = str(parts[0]) if parts else None
    where = ".".join(str(p) for p in parts) or "body"
    return ApiError(400, f"{where}: {first['msg']}", "missing_field" if first["type"] == "missing" else "invalid_type", field)


def _is_type_tag(part) -> bool:
    """pydantic names the union member it tried inside an error's location ('str', 'list[str]'): not a field."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "none") or "[" in part or part.startswith("function-"))


SCHEMAS: dict[str, Any] = {}  # every model body_schema described: app.openapi() adds them to components


def body_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra for a route that reads its body itself (read_json): the JSON body, as the schema says."""
    described = schema.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in described.pop("$defs", {}).items():
        SCHEMAS.setdefault(name, sub)
    SCHEMAS[schema.__name__] = described
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}}}}
