"""Who may talk to tfx serve, checked before any work (issue 20 #1: the browser as attacker). As ASGI
middleware, outermost first:

- `HostOrigin`: the Host header must name this server (localhost, 127.0.0.1, ::1, --host, --allowed-hosts),
  else 421: a DNS-rebinding page (a hostname of its own that resolves to 127.0.0.1) reaches the socket but
  not the routes. A request whose Origin header is present and is neither the server's own origin nor one
  of --allowed-origins is refused 403, so no page of another site can drive the server, preflight or not.
- Starlette's CORSMiddleware, only with --allowed-origins: preflights of those origins are answered here,
  before the key; without the flag no CORS header is ever sent.
- `ApiKey`: every route but /health and the playground's files needs `Authorization: Bearer KEY`.
- `JsonBodies`: a POST body is read only as application/json (415 otherwise): the "simple" requests a page
  may send cross-origin without a preflight (text/plain, forms) never reach a route.

With --host 0.0.0.0 (or ::) and an --api-key any Host is taken: the key is what guards a server that others
reach by names of their own (as ollama does)."""

from __future__ import annotations

import hmac
import ipaddress

from tfx.serve.http import ApiError, error_response

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
BODY_METHODS = (b"POST", b"PUT", b"PATCH")


def host_name(header: str) -> str:
    """'Host: [::1]:8000' -> '::1', 'LocalHost.:80' -> 'localhost'."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def allowed_hosts(host: str, extra: list[str], keyed: bool) -> frozenset[str] | None:
    """The Host names this server answers to; None: any (--allowed-hosts '*', or a wildcard --host with a key)."""
    if "*" in extra or (keyed and host.strip("[]") in WILDCARDS):
        return None
    names = {*LOOPBACK_NAMES, host_name(host) if not _is_ip(host.strip("[]")) else host.strip("[]").lower()}
    names.update(host_name(h) for h in extra)
    return frozenset(names)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _headers(scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


class HostOrigin:
    def __init__(self, app, hosts: frozenset[str] | None, origins: list[str]):
        self.app, self.hosts = app, hosts
        self.any_origin = "*" in origins
        self.origins = {o.lower().rstrip("/") for o in origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get(b"host", b"").decode("latin-1")
        if self.hosts is not None and host_name(host) not in self.hosts:
            shown = host[:80].encode("unicode_escape").decode("ascii")
            message = f"the Host header '{shown}' names no host this server answers to (a DNS-rebinding page looks like this); the server's operator can add the name with --allowed-hosts"
            await error_response(ApiError(421, message, "misdirected_request", "Host"))(scope, receive, send)
            return
        origin = headers.get(b"origin")
        if origin is not None and not self.allowed_origin(origin.decode("latin-1"), scope.get("scheme", "http"), host):
            message = "requests from this Origin are refused: the server answers pages of its own origin, and of the origins its operator lists with --allowed-origins"
            await error_response(ApiError(403, message, "origin_not_allowed", "Origin"))(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def allowed_origin(self, origin: str, scheme: str, host: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        return self.any_origin or origin in self.origins or origin == f"{scheme}://{host.strip().lower()}"


class ApiKey:
    """`Authorization: Bearer KEY`, compared in constant time, on every path but the public ones."""

    def __init__(self, app, key: str, public: tuple[str, ...]):
        self.app, self.key, self.public = app, key.encode(), public

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in self.public:
            scheme, _, token = _headers(scope).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                message = "missing or wrong API key: send Authorization: Bearer KEY with the server's --api-key"
                await error_response(ApiError(401, message, "invalid_api_key"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


class JsonBodies:
    """A body is read only as JSON: a POST without `Content-Type: application/json` is a 415."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method", "").encode() in BODY_METHODS:
            kind = _headers(scope).get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if kind != b"application/json" and not (kind.startswith(b"application/") and kind.endswith(b"+json")):
                shown = kind[:60].decode("latin-1").encode("unicode_escape").decode("ascii") or "none"
                message = f"Content-Type is {shown}: send the body as JSON with Content-Type: application/json"
                await error_response(ApiError(415, message, "unsupported_media_type", "Content-Type"))(scope, receive, send)
                return
        await self.app(scope, receive, send)
