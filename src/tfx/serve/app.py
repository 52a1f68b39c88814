"""The ASGI app: routes, request parsing with size limits, the API key check, and one mapping from errors to
OpenAI-style JSON error bodies. Bad input always gets a 4xx; a 500 means a bug in tfx."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tfx import __version__, registry
from tfx.errors import RecordError, TfxError, UsageError, explain
from tfx.serve import completions
from tfx.serve.config import Settings
from tfx.serve.engine import Manager, ModelNotFound, TaskMismatch
from tfx.serve.schemas import LENGTH_KEYS, TASK_REQUESTS, CompletionRequest, TaskRequest

log = logging.getLogger("tfx")

BATCH_HEADER = "x-tfx-batch-size"  # inputs in the largest model batch this request's inputs ran in
GENERATION_TASKS = ("generate", "translate", "summarize")


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
    """Any exception -> (HTTP status, JSON error body)."""
    if isinstance(exc, ApiError):
        return exc.status, error_body(exc.message, exc.kind, exc.code, exc.param)
    if isinstance(exc, ModelNotFound):
        return 404, error_body(str(exc), "invalid_request_error", "model_not_found", "model", exc)
    if isinstance(exc, TaskMismatch):
        return 400, error_body(str(exc), "invalid_request_error", "model_task_mismatch", "model", exc)
    if isinstance(exc, UsageError):
        return 400, error_body(str(exc), "invalid_request_error", "invalid_parameter", None, exc)
    if isinstance(exc, RecordError):
        return 400, error_body(str(exc), "invalid_request_error", "invalid_input", None, TfxError(str(exc)))
    if isinstance(exc, TfxError):
        return 400, error_body(str(exc), "invalid_request_error", "invalid_request", None, exc)
    known = explain(exc)
    if known is not None:  # out of memory, unreadable weights: the server's trouble, said plainly
        return 503, error_body(str(known), "server_error", "model_failed", None, known)
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


def check_lengths(params: dict[str, Any], cap: int, names: dict[str, str] | None = None) -> None:
    for key in LENGTH_KEYS:
        value = params.get(key)
        if value is not None and value > cap:
            name = (names or {}).get(key, key)
            raise ApiError(400, f"{name} is {value}, over this server's cap of {cap} (--max-tokens-cap)", "max_tokens_exceeded", name)


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

    async def known_error(request: Request, exc: Exception):
        return error_response(exc)

    # Expected errors are answered here; anything else reaches the Exception handler, which logs it as a bug.
    for kind in (ApiError, TfxError, RecordError, Exception):
        app.add_exception_handler(kind, known_error)

    @app.get("/health")
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
    async def models() -> dict[str, Any]:
        created = int(manager.started)
        data = [{"id": m["id"], "object": "model", "created": created, "owned_by": "tfx", "loaded": m["loaded"]} for m in manager.models()]
        return {"object": "list", "data": data}

    @app.post("/v1/completions")
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
        params = body.generate_params(completions.OPENAI_DEFAULT_MAX_TOKENS)
        check_lengths(params, settings.max_tokens_cap, {"max_new_tokens": "max_tokens"})
        slot, known = await manager.slot_for(body.model, "generate")
        validate(params, known)
        completion = completions.Completion(body, body.model)
        if body.stream and len(prompts) == 1 and streamable(params, known):
            stream = manager.stream(slot, "generate", params, prompts[0], completions.count_usage)
            events = completions.stream_one(completion, prompts[0], stream, sse_error)
            return StreamingResponse(events, media_type="text/event-stream", headers={BATCH_HEADER: "1"})
        outcomes = await manager.run(slot, "generate", params, prompts, mergeable=body.seed is None, finish=completions.count_usage)
        choices = []
        for prompt, (result, _) in zip(prompts, outcomes):
            if "error" in result:
                raise ApiError(400, f"prompt {prompt[:40]!r}: {result['error']}", "invalid_prompt", "prompt")
            choices += completion.choices(prompt, result, len(choices))
        headers = {BATCH_HEADER: str(max(size for _, size in outcomes))}
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
            params = body.params()
            check_lengths(params, settings.max_tokens_cap)
            name = body.model or registry.default_model(task, params.get("src") or "en", params.get("tgt"))
            slot, known = await manager.slot_for(name, task, body.revision)
            if task in GENERATION_TASKS:
                validate(params, known)
            if getattr(body, "stream", False):
                if len(texts) != 1 or not streamable(params, known):
                    raise ApiError(400, "stream needs one input, num_return_sequences 1 and num_beams 1", "invalid_stream", "stream")
                stream = manager.stream(slot, task, params, texts[0])
                return StreamingResponse(stream_records(stream, texts[0], name), media_type="text/event-stream", headers={BATCH_HEADER: "1"})
            outcomes = await manager.run(slot, task, params, texts, mergeable=params.get("seed") is None)
            results = [record(text, result, name) for text, (result, _) in zip(texts, outcomes)]
            headers = {BATCH_HEADER: str(max(size for _, size in outcomes))}
            return JSONResponse({"model": name, "results": results}, headers=headers)

        run_task.__name__ = "run_" + task.replace("-", "_")
        return run_task

    for task in TASK_REQUESTS:
        app.post(f"/v1/{task}")(task_route(task))
    return app


def validate(params: dict[str, Any], known) -> None:
    from tfx.tasks.base import validate_generation

    validate_generation(params, known.generation_defaults)


def streamable(params: dict[str, Any], known) -> bool:
    """transformers streams one sequence at a time, and never from beam search."""
    beams = params.get("num_beams") or known.generation_defaults.get("num_beams") or 1
    return (params.get("num_return_sequences") or 1) == 1 and beams == 1


def record(text: str, result: dict[str, Any], model: str) -> dict[str, Any]:
    """A result as the CLI's jsonl record: input, the task's fields, model; or input and error."""
    if "error" in result:
        return {"input": text, "error": result["error"]}
    return {"input": text, **result, "model": model}


def sse_error(exc: BaseException | str) -> str:
    """An error after a stream's headers went out: one last event (a route's errors are logged by uvicorn)."""
    if isinstance(exc, str):
        exc = RecordError(exc)
    status, body = describe(exc)
    if status >= 500:
        log.error("internal error in a stream", exc_info=exc)
    return completions.sse(body)


async def stream_records(stream, text: str, model: str):
    """Events of a streamed task request (what `tfx generate --server` reads on a terminal): {"text"}
    pieces, then {"result": record} or {"error"}, then [DONE]."""
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
