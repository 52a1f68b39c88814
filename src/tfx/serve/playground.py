"""The playground: `GET /` serves one small page (files shipped in the package, no build step, no CDN)
that runs any loaded model through the same HTTP API as every other client, with the API key the person
types. The page holds no data, so it is served without the key; every request it makes needs it."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response

# The page's own files (static/), each public: the page is ES modules (no bundler), one per concern.
ASSETS = ("playground.js", "api.js", "dom.js", "tasks.js", "chat.js", "playground.css")
PUBLIC_PATHS = ("/", *(f"/playground/{name}" for name in ASSETS))
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
# The page loads only its own files and talks only to this server.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> str:
    return resources.files("tfx.serve").joinpath("static", name).read_text(encoding="utf-8")


router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_file("index.html"), headers=_HEADERS)


@router.get("/playground/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    kind = name.rsplit(".", 1)[-1]
    if f"/playground/{name}" not in PUBLIC_PATHS:
        return Response("not found\n", status_code=404, media_type="text/plain")
    return Response(_file(name), media_type=_TYPES[kind], headers=_HEADERS)


def register(app: FastAPI) -> None:
    """Its routes on app (app.py includes `router` itself)."""
    app.include_router(router)
