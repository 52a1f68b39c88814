"""Starting the server: pick the device, load the -m models, bind the socket, then hand over to uvicorn."""

from __future__ import annotations

import errno
import logging
import socket
import sys

from tfx.errors import TfxError
from tfx.serve.config import Settings, check, is_loopback

log = logging.getLogger("tfx")


def serve(settings: Settings) -> int:
    check(settings)  # the security defaults: before any import, load or bind
    try:
        import uvicorn  # heavy: only when a server really starts

        from tfx.serve.app import create_app
    except ImportError as exc:
        raise TfxError(f"tfx serve needs {exc.name or 'fastapi and uvicorn'}, which is not installed.", 'Install the server\'s extra: pip install "tfx-cli[serve]".') from None
    from tfx import devices
    from tfx.serve.models import Manager

    device = devices.pick_device(settings.device)
    manager = Manager(settings, device, devices.pick_dtype(settings.dtype, device))
    for name in settings.models:
        manager.preload(name)
    for alias, model in settings.aliases.items():  # a typo in an alias fails now, not at its first request
        if model not in settings.models and not settings.allow_pull:
            from tfx import hub

            hub.resolve(model, download=False, local_dirs=False)
    setup_access_log(settings)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    if not settings.api_key and not is_loopback(settings.host):  # only with --insecure
        log.warning("listening on %s without --api-key (--insecure): anyone who can reach this port can run models", settings.host)
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    # One line a script (or a test) can wait for; with --port 0 it is the only place the port is told.
    print(f"tfx: serving on {url} (device {device}; models: {', '.join(settings.models) or 'loaded on first use'})", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        create_app(settings, manager),
        log_level="info" if settings.verbose else "warning",
        access_log=False,  # tfx's own line per request instead (serve.metrics; --quiet: none)
        timeout_keep_alive=30,  # the CLI keeps one connection across its batches
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def setup_access_log(settings: Settings) -> None:
    """One line per request on stderr (serve.metrics writes it): method, path, status, model, tokens, ms."""
    access = logging.getLogger("tfx.access")
    access.propagate = False
    access.handlers = [h for h in access.handlers if not getattr(h, "tfx_access", False)]
    if settings.quiet:
        access.setLevel(logging.WARNING)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tfx serve: %(message)s"))
    handler.tfx_access = True
    access.addHandler(handler)
    access.setLevel(logging.INFO)


def bind(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn so a busy port is a one-line error, and --port 0 picks a free one."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        hint = "Pick another with --port, or stop what is using it." if exc.errno == errno.EADDRINUSE else "Check --host and --port."
        raise TfxError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.", hint) from None
    sock.set_inheritable(True)
    return sock

