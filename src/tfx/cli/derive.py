"""Typer options derived from the settings schema (tfx.settings.schema): each task setting is declared once, with
its flags, help, help panel and metavar, and becomes an option of every command that takes it (the task
commands, `tfx compare`, `tfx chat`) here. The values come back by field name; `build_settings` turns them
into the task's settings inside the catch point, reading the files that `file=True` settings name.
Imports nothing heavy (tfx.settings is dataclasses only)."""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Any, Optional, Union, get_args, get_origin

import typer

from tfx.settings import SETTINGS, SettingField, Settings, schema

METAVARS = {int: "INT", float: "NUMBER", str: "TEXT"}


def escape(text: str) -> str:
    """Help text as Typer's rich markup shows it: [ray] stays [ray] instead of vanishing as a tag."""
    return text.replace("[", "\\[")


def base_type(annotation: Any) -> Any:
    """int | None -> int; tuple[str, ...] | None -> tuple."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    return get_origin(annotation) or annotation


def option_for(f: SettingField, help_prefix: str = "", flags: tuple[str, ...] | None = None) -> tuple[Any, Any]:
    """(Annotated type, default) of the Typer option that shows this setting."""
    opt, base = f.opt, base_type(f.type)
    decls = list(flags or opt.flags or (f.flag,))
    kw: dict[str, Any] = {"help": escape(help_prefix + opt.help), "rich_help_panel": opt.panel}
    default = f.default
    if base is bool:
        if opt.off:
            decls[0] = f"{decls[0]}/{opt.off}"
        kind: Any = Optional[bool] if default is None else bool
        kw["metavar"] = ""  # a flag takes no value: no type shown
        kw["show_default"] = False
    elif opt.many:
        kind, kw["metavar"], kw["show_default"] = Optional[list[str]], opt.metavar or "TEXT", False
    else:
        value = str if (opt.words or opt.file or base is tuple) else base
        kind = Optional[value] if default is None else value
        kw["metavar"] = opt.metavar or ("FILE" if opt.file else "|".join(opt.choices) if opt.choices else METAVARS.get(value, "TEXT"))
        kw["show_default"] = default is not None
    return Annotated[kind, typer.Option(*decls, **kw)], default


def setting_parameters(cls: type[Settings], skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> list[inspect.Parameter]:
    """The options of a settings class, in declaration order: those the CLI takes, less `skip` (or just `only`)."""
    params = []
    for f in schema(cls):
        if not f.opt.cli or f.name in skip or (only is not None and f.name not in only):
            continue
        annotation, default = option_for(f)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return params


def compare_parameters(skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """Every task's settings as options of `tfx compare`: one option per field name, its help prefixed with
    the tasks that take it; a short flag two different settings would share is dropped."""
    seen: dict[str, tuple[SettingField, list[str], list[str]]] = {}
    for task, cls in SETTINGS.items():
        for f in schema(cls):
            if not f.opt.cli or f.name in skip or f.name == "no_truncate":
                continue
            first, tasks, flags = seen.setdefault(f.name, (f, [], []))
            tasks.append(task)
            flags.extend(x for x in (f.opt.flags or (f.flag,)) if x not in flags)
    owners: dict[str, set[str]] = {}
    for name, (_, _, flags) in seen.items():
        for flag in flags:
            owners.setdefault(flag, set()).add(name)
    params = []
    for name, (f, tasks, flags) in seen.items():
        kept = tuple(x for x in flags if len(owners[x]) == 1 or x.startswith("--"))
        where = ", ".join(tasks) if len(tasks) < len(SETTINGS) else "every task"
        annotation, _ = option_for(f, f"{where}: ", kept)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    return params


def flag_of(task: str, name: str) -> str:
    from tfx.settings import schema_field

    f = schema_field(SETTINGS[task], name)
    return f.flag if f is not None else "--" + name.replace("_", "-")


def build_settings(task: str, values: dict[str, Any]) -> Settings:
    """The task's settings from the options' values (inside the catch point: a bad value is one line)."""
    cls = SETTINGS[task]
    given = {k: v for k, v in values.items() if v is not None}
    for f in schema(cls):
        if f.opt.file and given.get(f.name) is not None:
            given[f.name] = read_text_file(given[f.name], f.flag)
    return cls.from_params(given)


def read_text_file(path: str, flag: str) -> str:
    from tfx.errors import UsageError

    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file.", "Give the path of an existing file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise UsageError(f"cannot read {flag} {path}: {why}.", "Give a readable UTF-8 text file.") from None
