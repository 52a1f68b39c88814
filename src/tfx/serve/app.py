"""The ASGI app: routes, request parsing with size limits, the API key check, and the server's one catch
point (`describe`) from errors to OpenAI-style JSON error bodies. Bad input always gets a 4xx; a 500 means
a bug in tfx."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
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
from tfx.serve import admin, completions, encoders, limits, metrics, playground
from tfx.serve.batcher import Outcome, QueueFull
from tfx.serve.config import Settings
from tfx.serve.limits import LimitError, check_lengths
from tfx.serve.models import Manager
from tfx.serve.schemas import TASK_REQUESTS, CompletionRequest, TaskRequest
from tfx.tasks import generate

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
    if isinstance(exc, (ApiError, LimitError)):
        return exc.status, error_body(exc.message, getattr(exc, "kind", "invalid_request_error"), exc.code, exc.param)
    if isinstance(exc, ClientGone):  # nobody reads this answer; 499 as nginx logs it
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


RETRY_AFTER_S = 1  # what a client told the queue is full waits before trying again


def error_response(exc: BaseException) -> JSONResponse:
    status, body = describe(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, QueueFull):
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse(body, status_code=status, headers=headers)


class ClientGone(Exception):
    """The client disconnected while its work waited: the work was dropped, nobody reads the answer."""


async def unless_gone(request: Request, work):
    """Await work (a slot's run) unless the client disconnects first; then cancel it, so a batch that has
    not started drops its inputs (uvicorn's receive() answers http.disconnect once the client has gone)."""
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
    """No key on the server, or the right Bearer key (constant time), as ApiKeyMiddleware checks it."""
    if not key:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


class ApiKeyMiddleware:
    """Every route but /health and the playground page needs `Authorization: Bearer KEY`, compared in constant time."""

    def __init__(self, app, key: str):
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health" and scope["path"] not in playground.PUBLIC_PATHS:
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
        parsed = schema.model_validate_json(b"".join(body))
        request.state.tfx_model = getattr(parsed, "model", None)  # the model label of /metrics (serve.metrics)
        return parsed
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
    playground.register(app)
    importlib.import_module("tfx.serve.chat").register(app, settings, manager)  # chat builds on this module
    encoders.register(app, settings, manager)  # /v1/embeddings (OpenAI) and /v1/rerank (Jina, Cohere, llama.cpp)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code))

    @app.get("/health")
    @answered
    async def health(request: Request) -> dict[str, Any]:
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

    @app.get("/v1/models")
    @answered
    async def models() -> dict[str, Any]:
        created = int(manager.started)
        data = [
            {"id": m["id"], "object": "model", "created": created, "owned_by": "tfx", "loaded": m["loaded"], "tasks": list(registry.tasks_for_class(m["head"]))}
            for m in manager.models()
        ]  # fmt: skip
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
        limits.check_inputs(len(prompts), settings, "prompt")
        limits.check_stops(body.stops())
        wanted = body.settings()
        check_lengths(wanted, settings.max_tokens_cap, {"max_new_tokens": "max_tokens"})
        slot, prepared = await manager.slot_for(body.model, "generate", wanted=wanted)
        check_work("generate", wanted, prompts, prepared)
        completion = completions.Completion(body, body.model)
        if body.stream and len(prompts) == 1 and wanted.streamable(prepared.generation_defaults):
            stream = slot.stream("generate", wanted, prompts[0], completions.count_usage)
            events = completions.stream_one(completion, prompts[0], stream, sse_error)
            return StreamingResponse(events, media_type="text/event-stream", headers={BATCH_HEADER: "1"})
        outcomes = await unless_gone(request, slot.run("generate", wanted, prompts, completions.count_usage))
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

    def check_work(task: str, wanted, texts: list[str], prepared) -> None:
        """What needs the model's configs, before anything is queued: the settings against its generation
        config, the room in its context, the request budget."""
        wanted.validate(prepared.generation_defaults)
        if task == "generate":
            generate.check_room(generate.length_kwargs(wanted, prepared.generation_defaults), prepared.config, prepared.family)
        limits.check_budget(task, wanted, texts, settings, prepared)

    def task_route(task: str):
        schema = TASK_REQUESTS[task]

        async def run_task(request: Request):
            body: TaskRequest = await read_json(request, schema, settings.max_body_bytes)
            texts = body.texts()
            if texts is None:
                raise ApiError(422, "give either input (a string) or inputs (a list of strings)", "missing_field", "inputs")
            limits.check_inputs(len(texts), settings)
            wanted = body.settings()
            check_lengths(wanted, settings.max_tokens_cap)
            limits.check_top_k(task, wanted, settings)
            name = body.model or wanted.default_model(task)  # the settings' own default (classify --labels: an NLI model)
            request.state.tfx_model = name
            slot, prepared = await manager.slot_for(name, task, body.revision, wanted.variant(), wanted)
            check_work(task, wanted, texts, prepared)
            if getattr(body, "stream", False):
                if len(texts) != 1 or not wanted.streamable(prepared.generation_defaults):
                    raise ApiError(400, "stream needs one input, num_return_sequences 1 and num_beams 1", "invalid_stream", "stream")
                stream = slot.stream(task, wanted, texts[0])
                return StreamingResponse(stream_records(stream, texts[0], name), media_type="text/event-stream", headers={BATCH_HEADER: "1"})
            outcomes = await unless_gone(request, slot.run(task, wanted, texts))
            results = [record(text, outcome, name) for text, outcome in zip(texts, outcomes)]
            headers = {BATCH_HEADER: str(max(o.batch for o in outcomes))}
            return JSONResponse({"model": name, "results": results}, headers=headers)

        run_task.__name__ = "run_" + task.replace("-", "_")
        return answered(run_task)

    for task in TASK_REQUESTS:
        app.post(f"/v1/{task}")(task_route(task))
    admin.register(app, settings, manager)  # /v1/ps and /v1/unload: tfx ps, tfx stop
    metrics.register(app, settings, manager)  # last: /metrics, and the middleware that knows every route
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
