"""What every command shares: the one catch point (`execute`), logging set-up and format checks.
Imports nothing heavy."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import typer


def execute(body: Callable[[], int | None]) -> None:
    """The one catch point: known errors become one line on stderr that names the fix; Ctrl-C exits 130
    and a closed stdout (| head) ends quietly; everything already written stays written. Unknown
    exceptions keep their traceback under tests and with TFX_DEBUG=1."""
    from tfx import errors, explain

    code = 0
    try:
        code = body() or 0
    except KeyboardInterrupt:
        flush_quietly()
        print("tfx: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = stdout_gone()
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to a message, or shown in full under tests / TFX_DEBUG=1
        error = explain.explain(exc)
        if error is None:
            if errors.keep_tracebacks():
                raise
            print(f"tfx: error: {errors.one_line(exc)}", file=sys.stderr)
            code = 1
        else:
            print(f"tfx: error: {error}", file=sys.stderr)
            code = error.exit_code
        flush_quietly()
    raise typer.Exit(code)


def flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError, OSError):
        stdout_gone()


def stdout_gone() -> int:
    """The reader went away: point stdout at /dev/null so the final flush at exit cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def setup(offline: bool = False, quiet: bool = False, verbose: bool = False, prefix: str = "tfx") -> None:
    """Environment for huggingface_hub (before it is imported) and tfx's logger on stderr."""
    from tfx import hub

    hub.configure_env(offline)
    setup_logging(quiet, verbose, prefix)


def setup_logging(quiet: bool, verbose: bool, prefix: str = "tfx") -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    if prefix == "tfx":
        handler.setFormatter(logging.Formatter("tfx: %(levelname)s: %(message)s" if verbose else "tfx: warning: %(message)s"))
        level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    else:  # a server's log is for its operator: loads and unloads are shown unless --quiet
        handler.setFormatter(logging.Formatter(f"{prefix}: %(levelname)s: %(message)s"))
        level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logger = logging.getLogger("tfx")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(level)


def check_format(fmt: str, allowed: tuple[str, ...], flag: str = "--format") -> None:
    from tfx.errors import UsageError

    if fmt not in allowed:
        raise UsageError(f"unknown {flag} '{fmt}'.", f"Use one of: {', '.join(allowed)}.")
