"""`tfx ps` and `tfx stop` (as ollama has): what a running `tfx serve` has loaded, and unloading one model
without restarting it. The HTTP client is the --server engine's (engines.remote.Server: TFX_SERVER, and
TFX_API_KEY for the key). Imports nothing heavy."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

DEFAULT_SERVER = "http://127.0.0.1:8000"  # tfx serve's default --host and --port
ServerUrl = Annotated[Optional[str], typer.Option("--server", envvar="TFX_SERVER", help=f"The tfx serve to ask (default {DEFAULT_SERVER}).", show_default=False)]

PS_EXAMPLES = """Examples:

  tfx ps

  tfx ps --server http://10.0.0.5:8000 --format json

  tfx stop gpt2
"""


def register(app: typer.Typer) -> None:
    app.command("ps", epilog=PS_EXAMPLES)(ps)
    app.command("stop", epilog=PS_EXAMPLES)(stop)


def ps(
    server: ServerUrl = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text: a table; json: the server's rows, one JSON object.")] = "text",
) -> None:
    """List the models a running tfx serve has: tasks, device, memory, idle time, requests served."""
    from tfx.cli.common import check_format, execute

    def body() -> int:
        check_format(fmt, ("text", "json"))
        answer = _ask(server, "GET", "/v1/ps")
        if fmt == "json":
            print(json.dumps(answer, ensure_ascii=False))
        else:
            print(table(answer.get("data", [])))
        return 0

    execute(body)


def stop(
    model: Annotated[str, typer.Argument(help="The model to unload (as tfx ps names it).", show_default=False)],
    server: ServerUrl = None,
) -> None:
    """Unload a model from a running tfx serve; the next request that needs it loads it again."""
    from tfx.cli.common import execute

    def body() -> int:
        answer = _ask(server, "POST", "/v1/unload", {"model": model})
        import sys

        print(f"tfx: unloaded {model}" if answer.get("unloaded") else f"tfx: {model} was not loaded", file=sys.stderr)
        return 0

    execute(body)


def _ask(url: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    from tfx.engines.remote import Server
    from tfx.errors import TfxError, about

    server = Server(url or DEFAULT_SERVER)
    try:
        with about(server=server.url):
            answer = server.request(method, path, body)
    finally:
        server.close()
    if not isinstance(answer, dict):
        raise TfxError(f"the server at {server.url} sent an answer tfx cannot read.", "Check that --server points at `tfx serve` of this version.")
    return answer


def table(rows: list[dict[str, Any]]) -> str:
    """MODEL, TASKS, BACKEND, DEVICE, MEMORY, IDLE, REQUESTS: one line per model, aligned."""
    lines = [("MODEL", "TASKS", "BACKEND", "DEVICE", "MEMORY", "IDLE", "REQUESTS")]
    for row in rows:
        loaded = row.get("loaded")
        lines.append((
            str(row.get("id", "")),
            ",".join(row.get("tasks") or []),
            str(row.get("backend", "")),
            str(row.get("device") or "-") if loaded else "(unloaded)",
            size(int(row.get("memory_bytes") or 0)) if loaded else "-",
            duration(float(row.get("idle_s") or 0)),
            str(row.get("requests", 0)),
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
