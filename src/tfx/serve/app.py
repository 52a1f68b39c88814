"""The ASGI app, assembled: the server's state on `app.state` (settings, manager), one router per route
module, the error handlers that answer in OpenAI's shape, the published schema (/openapi.json, behind the
key like every route but /health and the playground), and the middleware, outermost first: metrics and the
access log, Host and Origin (serve.security), CORS (--allowed-origins), the API key, JSON bodies only.

A route module exposes `router = APIRouter()` and reads `settings, manager = http.state(request)`; see
serve.http for the helpers every route uses. The names that lived here (ApiError, read_json, answered,
unless_gone, sse_error, describe, BATCH_HEADER) are importable from here still; their home is serve.http."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from tfx import __version__
from tfx.serve import admin, chat, completions, encoders, generation, metrics, playground, responses, routes_models, routes_tasks, security
from tfx.serve.config import Settings
from tfx.serve.http import (  # noqa: F401 - their old home
    BATCH_HEADER,
    SCHEMAS,
    ApiError,
    ClientGone,
    answered,
    describe,
    error_body,
    error_response,
    read_json,
    sse_error,
    unless_gone,
)
from tfx.serve.models import Manager
from tfx.serve.work import Outcome, QueueFull  # noqa: F401 - their old home

ROUTERS = (routes_models, routes_tasks, encoders, admin, metrics, playground)  # each module's `router`
PUBLIC_PATHS = ("/health", *playground.PUBLIC_PATHS)  # no key needed (the page holds no data; /health says only ok)
OPENAPI_PATH = "/openapi.json"


def create_app(settings: Settings, manager: Manager) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        reaper = asyncio.create_task(manager.reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            manager.close()

    app = FastAPI(title="tfx", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=OPENAPI_PATH)
    app.state.settings, app.state.manager = settings, manager
    for module in ROUTERS:
        app.include_router(module.router)
    handler = generation.Handler(settings, manager)  # OpenAI's generation endpoints share one body (serve.generation)
    for module in (completions, chat, responses):
        module.register(app, settings, manager, handler)
    add_error_handlers(app)
    app.openapi = lambda: openapi(app)
    add_middleware(app, settings, manager)
    return app


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code), exc.headers)  # 405 keeps Allow

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "path", "query")) or "body"
        return error_response(ApiError(400, f"{where}: {first.get('msg', 'invalid')}", "invalid_type", where))


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the request models the routes read themselves (http.body_schema)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description="tfx serve: OpenAI's API and tfx's tasks")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(SCHEMAS)
        app.openapi_schema = schema
    return app.openapi_schema


def add_middleware(app: FastAPI, settings: Settings, manager: Manager) -> None:
    """Innermost first (Starlette wraps each added middleware around the ones before)."""
    app.add_middleware(security.JsonBodies)
    if settings.api_key:
        app.add_middleware(security.ApiKey, key=settings.api_key, public=PUBLIC_PATHS)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.allowed_origins, allow_methods=["GET", "POST"], allow_headers=["*"],
            expose_headers=[BATCH_HEADER, "Retry-After"], max_age=600,
        )  # fmt: skip
    hosts = security.allowed_hosts(settings.host, settings.allowed_hosts, bool(settings.api_key))
    app.add_middleware(security.HostOrigin, hosts=hosts, origins=settings.allowed_origins)
    routes = {getattr(route, "path", "") for route in (*app.routes, *(r for module in ROUTERS for r in module.router.routes))} - {""}
    app.add_middleware(metrics.MetricsMiddleware, metrics=manager.metrics, routes=routes)  # outermost: it sees every answer
