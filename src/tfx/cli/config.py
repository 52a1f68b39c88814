"""`tfx alias set/ls/rm` and `tfx config set/get/ls/rm/path`: the user's aliases and per-task default
models, kept by tfx.userconfig in one TOML file ($TFX_CONFIG, else $XDG_CONFIG_HOME/tfx/config.toml).
An alias works wherever a model name does (every task's -m, chat, serve -m, pull)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from tfx.cli import completion
from tfx.cli.common import check_format, execute, setup

ALIAS_EXAMPLES = """Examples:

  tfx alias set story tfx-test/tiny-gpt2

  tfx generate -m story "Once upon a time"

  tfx alias ls --format json

  tfx alias rm story
"""
CONFIG_EXAMPLES = """Examples:

  tfx config set generate.model distilgpt2      # tfx generate without -m now runs distilgpt2

  tfx config set chat.model HuggingFaceTB/SmolLM2-135M-Instruct

  tfx config get generate.model

  tfx config ls

  TFX_CONFIG=./project.toml tfx config ls       # another file
"""
Format = Annotated[str, typer.Option("--format", "-f", help="text or json.")]
AliasName = Annotated[str, typer.Argument(help="The alias: one word, no '/'.", show_default=False, autocompletion=completion.complete_alias)]
Key = Annotated[str, typer.Argument(help="TASK.model (e.g. generate.model, chat.model) or aliases.NAME.", show_default=False, autocompletion=completion.complete_config_key)]


def register(app: typer.Typer) -> None:
    alias_app = typer.Typer(name="alias", help="Short names for models, usable wherever a model name is.", no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
    alias_app.command("set", epilog=ALIAS_EXAMPLES)(alias_set)
    alias_app.command("ls", epilog=ALIAS_EXAMPLES)(alias_ls)
    alias_app.command("rm", epilog=ALIAS_EXAMPLES)(alias_rm)
    app.add_typer(alias_app, name="alias")
    config_app = typer.Typer(name="config", help="tfx's own settings: the default model of each task.", no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
    config_app.command("set", epilog=CONFIG_EXAMPLES)(config_set)
    config_app.command("get", epilog=CONFIG_EXAMPLES)(config_get)
    config_app.command("ls", epilog=CONFIG_EXAMPLES)(config_ls)
    config_app.command("rm", epilog=CONFIG_EXAMPLES)(config_rm)
    config_app.command("path", epilog=CONFIG_EXAMPLES)(config_path)
    app.add_typer(config_app, name="config")


# ---- tfx alias ----------------------------------------------------------------------------------------


def alias_set(
    name: AliasName,
    model: Annotated[str, typer.Argument(help="A Hub id, a model tfx knows, a local directory or another alias.", show_default=False, autocompletion=completion.complete_model)],
) -> None:
    """Make NAME stand for MODEL."""

    def body() -> int:
        setup()
        check_alias(name, model)
        from tfx import userconfig

        path = userconfig.set_value(f"{userconfig.ALIASES}.{name}", model)
        print(f"tfx: {name} -> {model} (in {path})", file=sys.stderr)
        return 0

    execute(body)


def alias_ls(fmt: Format = "text") -> None:
    """The aliases, and the model each stands for."""

    def body() -> int:
        setup()
        check_format(fmt, ("text", "json"))
        from tfx import userconfig
        from tfx.io import print_json, print_table

        table = userconfig.aliases()
        if fmt == "json":
            print_json(table)
        elif table:
            print_table(["alias", "model"], [[name, target] for name, target in table.items()])
        else:
            print(f"tfx: no aliases yet ({userconfig.config_path()}). `tfx alias set NAME MODEL` adds one.", file=sys.stderr)
        return 0

    execute(body)


def alias_rm(name: AliasName) -> None:
    """Forget an alias (the model stays in the cache)."""

    def body() -> int:
        setup()
        from tfx import userconfig
        from tfx.errors import TfxError

        if not userconfig.remove(f"{userconfig.ALIASES}.{name}"):
            raise TfxError(f"there is no alias {name}.", "`tfx alias ls` lists them.")
        print(f"tfx: removed the alias {name}.", file=sys.stderr)
        return 0

    execute(body)


def check_alias(name: str, model: str) -> None:
    """An alias is a new word: not one of the catalogue's names (they keep meaning what they mean), not a
    path, and it must name something a model name can be."""
    from tfx import hub, registry, userconfig
    from tfx.errors import UsageError

    userconfig.check_alias_name(name)
    if registry.lookup(name) is not None:
        raise UsageError(f"{name} is a model tfx knows: an alias of that name would hide it.", "Pick another name.")
    if not model.strip():
        raise UsageError("the alias needs a model.", f"e.g. tfx alias set {name} distilgpt2.")
    if model == name or userconfig.resolve(model) == name:
        raise UsageError(f"the alias {name} would stand for itself.", "Give it a model.")
    if model in userconfig.aliases() or registry.lookup(model) or os.path.isdir(os.path.expanduser(model)):
        return
    hub.check_name(model)  # a Hub id's shape: a typo with a space or a slash too many fails now, not at the run


# ---- tfx config ---------------------------------------------------------------------------------------


def config_set(key: Key, value: Annotated[str, typer.Argument(help="The value: for TASK.model a model name or alias.", show_default=False)]) -> None:
    """Set a key, e.g. `tfx config set generate.model distilgpt2`."""

    def body() -> int:
        setup()
        from tfx import userconfig

        table, name = check_key(key)
        if table == userconfig.ALIASES:
            check_alias(name, value)
        elif not value.strip():
            from tfx.errors import UsageError

            raise UsageError(f"{key} needs a value.", f"To unset it: tfx config rm {key}.")
        path = userconfig.set_value(key, value)
        print(f"tfx: {key} = {value} (in {path})", file=sys.stderr)
        return 0

    execute(body)


def config_get(key: Key) -> None:
    """Print a key's value; exit 1 when it is not set."""

    def body() -> int:
        setup()
        from tfx import userconfig

        check_key(key)
        value = userconfig.get(key)
        if value is None:
            print(f"tfx: {key} is not set.", file=sys.stderr)
            return 1
        print(value)
        return 0

    execute(body)


def config_ls(fmt: Format = "text") -> None:
    """Every key that is set, and the file they live in."""

    def body() -> int:
        setup()
        check_format(fmt, ("text", "json"))
        from tfx import userconfig
        from tfx.io import print_json, print_table

        items = userconfig.items()
        if fmt == "json":
            print_json(dict(items))
        elif items:
            print_table(["key", "value"], [[k, v] for k, v in items])
        print(f"tfx: config file: {userconfig.config_path()}" + ("" if userconfig.config_path().exists() else " (none yet)"), file=sys.stderr)
        return 0

    execute(body)


def config_rm(key: Key) -> None:
    """Unset a key."""

    def body() -> int:
        setup()
        from tfx import userconfig
        from tfx.errors import TfxError

        check_key(key)
        if not userconfig.remove(key):
            raise TfxError(f"{key} is not set.", "`tfx config ls` lists what is.")
        print(f"tfx: {key} unset.", file=sys.stderr)
        return 0

    execute(body)


def config_path() -> None:
    """Print the config file's path ($TFX_CONFIG, else $XDG_CONFIG_HOME/tfx/config.toml)."""
    from tfx import userconfig

    print(userconfig.config_path())


def check_key(key: str) -> tuple[str, str]:
    from tfx import userconfig
    from tfx.errors import UsageError

    table, name = userconfig.split_key(key)
    if table == userconfig.ALIASES:
        return table, name
    known = completion.config_keys()
    if key not in known:
        tasks = [k for k in known if not k.startswith(userconfig.ALIASES + ".")]
        raise UsageError(f"unknown config key '{key}'.", f"Use one of: {', '.join(tasks)}, or aliases.NAME.")
    return table, name
