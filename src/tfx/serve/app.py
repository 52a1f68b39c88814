"""The ASGI app: routes, request parsing with size limits, the API key check, and the server's one catch
point (`describe`) from errors to OpenAI-style JSON error bodies. Bad input always gets a 4xx; a 500 means
a bug in tfx."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tfx import __version__, registry
from tfx.errors import ModelNotFound, RecordError, TaskMismatch, TfxError
from tfx.explain import explain
from tfx.serve import completions
from tfx.serve.batcher import Outcome
from tfx.serve.config import Settings
from tfx.serve.models import Manager
from tfx.serve.schemas import LENGTH_KEYS, TASK_REQUESTS, CompletionRequest, TaskRequest
from tfx.spec import Settings as TaskSettings

log = logging.getLogger("tfx")

BATCH_HEADER = "x-tfx-batch-size"  # inputs in the largest model batch this request's inputs ran in


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind


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


def error_response(exc: BaseException) -> JSONResponse:
    status, body = describe(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


class ApiKeyMiddleware:
    """Every route but /health needs `Authorization: Bearer KEY`, compared in constant time."""

    def __init__(self, app, key: str):
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                message = "missing or wrong API key: send Authorization: Bearer KEY with the server's --api-key"
                await error_response(ApiError(401, message, "invalid_api_key"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_json(request: Request, schema: type[BaseModel], limit: int) -> Any:
    """The body, at most `limit` bytes, parsed and validated against schema."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is over the server's limit of {limit} bytes", "request_too_large")
    body, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over the server's limit of {limit} bytes", "request_too_large")
        body.append(chunk)
    try:
        return schema.model_validate_json(b"".join(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise ApiError(400, f"the body is not valid JSON: {first['msg']}", "invalid_json") from None
        field = str(first["loc"][0]) if first["loc"] else "body"
        where = ".".join(str(p) for p in first["loc"] if not _is_type_tag(p)) or "body"
        raise ApiError(422, f"{where}: {first['msg']}", "invalid_type" if first["type"] != "missing" else "missing_field", field) from None


def _is_type_tag(part) -> bool:
    """pydantic names the union member it tried inside an error's location ('str', 'list[str]'): not a field."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "none") or "[" in part)


def check_lengths(settings: TaskSettings, cap: int, names: dict[str, str] | None = None) -> None:
    for key in LENGTH_KEYS:
        value = getattr(settings, key, None)
        if value is not None and value > cap:
            name = (names or {}).get(key, key)
            raise ApiError(400, f"{name} is {value}, over this server's cap of {cap} (--max-tokens-cap)", "max_tokens_exceeded", name)


def answered(route):
    """A route whose every exception is answered by `describe` (a bug is logged there, once)."""

    @functools.wraps(route)
    async def run(*args, **kwargs):
        try:
            return await route(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the server's one catch point
            return error_response(exc)

    return run


def create_app(settings: Settings, manager: Manager) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        reaper = asyncio.create_task(manager.reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            manager.close()

    app = FastAPI(title="tfx", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, key=settings.api_key)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code))

    @app.get("/health")
    @answered
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "device": manager.device,
            "uptime_s": round(time.time() - manager.started, 1),
            "models": manager.models(),
            **manager.stats,
        }

    @app.get("/v1/models")
    @answered
    async def models() -> dict[str, Any]:
        created = int(manager.started)
        data = [{"id": m["id"], "object": "model", "created": created, "owned_by": "tfx", "loaded": m["loaded"]} for m in manager.models()]
        return {"object": "list", "data": data}

    @app.post("/v1/completions")
    @answered
    async def create_completion(request: Request):
        body: CompletionRequest = await read_json(request, CompletionRequest, settings.max_body_bytes)
        unsupported = body.unsupported()
        if unsupported:
            raise ApiError(400, f"{unsupported} is not supported by tfx serve", "unsupported_parameter", unsupported)
        prompts = body.prompts()
        if not prompts or any(not p for p in prompts):
            raise ApiError(400, "prompt is empty", "invalid_prompt", "prompt")
        if len(body.stops()) > 4:
            raise ApiError(400, "stop takes at most 4 strings", "invalid_stop", "stop")
        wanted = body.settings()
        check_lengths(wanted, settings.max_tokens_cap, {"max_new_tokens": "max_tokens"})
        slot, prepared = await manager.slot_for(body.model, "generate")
        wanted.validate(prepared.generation_defaults)
        completion = completions.Completion(body, body.model)
        if body.stream and len(prompts) == 1 and wanted.streamable(prepared.generation_defaults):
            stream = slot.stream("generate", wanted, prompts[0], completions.count_usage)
            events = completions.stream_one(completion, prompts[0], stream, sse_error)
            return StreamingResponse(events, media_type="text/event-stream", headers={BATCH_HEADER: "1"})
        outcomes = await slot.run("generate", wanted, prompts, completions.count_usage)
        choices = []
        for prompt, outcome in zip(prompts, outcomes):
            if outcome.error is not None:
                raise ApiError(400, f"prompt {prompt[:40]!r}: {outcome.error}", "invalid_prompt", "prompt")
            choices += completion.choices(prompt, outcome.result, outcome.extra, len(choices))
        headers = {BATCH_HEADER: str(max(o.batch for o in outcomes))}
        if body.stream:  # several prompts or sequences: each choice is sent whole
            events = [completion.event([c]) for c in choices]
            if body.stream_options and body.stream_options.include_usage:
                events.append(completion.usage_event())
            return StreamingResponse(iter(events + [completions.SSE_DONE]), media_type="text/event-stream", headers=headers)
        return JSONResponse(completion.body(choices), headers=headers)

    def task_route(task: str):
        schema = TASK_REQUESTS[task]

        async def run_task(request: Request):
            body: TaskRequest = await read_json(request, schema, settings.max_body_bytes)
            texts = body.texts()
            if texts is None:
                raise ApiError(422, "give either input (a string) or inputs (a list of strings)", "missing_field", "inputs")
            wanted = body.settings()
            check_lengths(wanted, settings.max_tokens_cap)
            name = body.model or registry.default_model(task, getattr(wanted, "src", "en"), getattr(wanted, "tgt", None))
            slot, prepared = await manager.slot_for(name, task, body.revision)
            wanted.validate(prepared.generation_defaults)
            if getattr(body, "stream", False):
                if len(texts) != 1 or not wanted.streamable(prepared.generation_defaults):
                    raise ApiError(400, "stream needs one input, num_return_sequences 1 and num_beams 1", "invalid_stream", "stream")
                stream = slot.stream(task, wanted, texts[0])
                return StreamingResponse(stream_records(stream, texts[0], name), media_type="text/event-stream", headers={BATCH_HEADER: "1"})
            outcomes = await slot.run(task, wanted, texts)
            results = [record(text, outcome, name) for text, outcome in zip(texts, outcomes)]
            headers = {BATCH_HEADER: str(max(o.batch for o in outcomes))}
            return JSONResponse({"model": name, "results": results}, headers=headers)

        run_task.__name__ = "run_" + task.replace("-", "_")
        return answered(run_task)

    for task in TASK_REQUESTS:
        app.post(f"/v1/{task}")(task_route(task))
    return app


def record(text: str, outcome: Outcome, model: str) -> dict[str, Any]:
    """An outcome as the CLI's jsonl record: input, the task's fields, model; or input and error."""
    if outcome.error is not None:
        return {"input": text, "error": outcome.error}
    return {"input": text, **outcome.result.record(), "model": model}


def sse_error(exc: BaseException | str) -> str:
    """An error after a stream's headers went out: one last event."""
    status, body = describe(RecordError(exc) if isinstance(exc, str) else exc)
    return completions.sse(body)


async def stream_records(stream, text: str, model: str):
    """Events of a streamed task request (what `tfx generate --server` reads on a terminal): {"text"}
    pieces, then {"result": record} (an error record for a bad input) or {"error"}, then [DONE]."""
    try:
        async for kind, value in stream.events():
            if kind == "text":
                yield completions.sse({"text": value})
            elif kind == "error":
                yield sse_error(value)
                break
            elif value is not None:
                yield completions.sse({"result": record(text, value, model)})
        yield completions.SSE_DONE
    finally:
        stream.close()
