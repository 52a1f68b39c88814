"""The tfx app: the root command, the registration of every command module, and `main`. Nothing heavy is
imported here, so `tfx --help` answers at once; torch and transformers load only inside the command that
runs a model."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from tfx import __version__
from tfx.cli.common import stdout_gone
from tfx.cli.derive import readable_metavars

app = typer.Typer(
    name="tfx",
    help="Hugging Face Transformer models from the shell: fill-mask, classify, ner, qa, embed and rank with encoder models; generate and chat with decoder models; translate and summarize with encoder-decoder models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # Typer's own: --install-completion, --show-completion (values: cli/completion.py)
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_callback(value: bool) -> None:
    if value:
        print(f"tfx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version and exit.")] = None,
) -> None:
    """Hugging Face Transformer models from the shell."""


# Each command group lives in its own module; registering them imports nothing heavy.
from tfx.cli import chat, compare, config, envcmd, hubcmds, ps, serve, tasks  # noqa: E402

tasks.register(app)
hubcmds.register(app)
app.command("compare", epilog=compare.COMPARE_EXAMPLES)(compare.compare)
app.command("env", epilog=envcmd.ENV_EXAMPLES)(envcmd.env)
serve.register(app)
ps.register(app)  # tfx ps, tfx stop: a running server's models
chat.register(app)
config.register(app)  # tfx alias, tfx config

# `tfx --help` in groups: the task commands by family in the seed's order (tasks.register sets theirs), then
# these. A command missing here falls into Typer's plain "Commands" panel, which a test forbids.
PANELS = {
    "chat": tasks.DECODER_PANEL,
    "compare": "Compare and inspect",
    "env": "Compare and inspect",
    "models": "Models and cache",
    "pull": "Models and cache",
    "search": "Models and cache",
    "cache": "Models and cache",
    "alias": "Models and cache",
    "config": "Models and cache",
    "serve": "Serving",
    "ps": "Serving",
    "stop": "Serving",
}
readable_metavars(app)  # INT, TEXT, none for flags: never a Python type name in --help
for info in [*app.registered_commands, *app.registered_groups]:
    name = info.name or getattr(info.callback, "__name__", "")
    if name in PANELS:
        info.rich_help_panel = PANELS[name]


def prog_name() -> str:
    """tfx or tfx-cli as typed; "tfx" under `python -m tfx`, so completion's variable is _TFX_COMPLETE."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in ("tfx", "tfx-cli") else "tfx"


def main() -> None:
    from tfx.devices import prepare_env

    prepare_env()  # before anything imports torch
    code = 0
    try:
        app(prog_name=prog_name())
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BrokenPipeError:
        code = stdout_gone()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError, OSError):
        code = code or stdout_gone()
    sys.stderr.flush()
    # os._exit, not sys.exit: the stdin reader thread may be blocked in a read, and a normal interpreter
    # shutdown would then abort on the stdin lock (SIGABRT) instead of exiting with our status.
    os._exit(code)


if __name__ == "__main__":
    main()
