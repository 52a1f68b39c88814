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


def with_settings(settings: list[inspect.Parameter]):
    """A command with its own options, then `settings` (from setting_parameters or compare_parameters);
    the function gets the settings' values by field name in `given`. What task_command does for the task
    commands, for chat and compare."""

    def decorate(fn):
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "given"]
        names = {p.name for p in own}
        extra = [p for p in settings if p.name not in names]

        def command(**kwargs: Any) -> None:
            given = {p.name: kwargs.pop(p.name) for p in extra}
            return fn(**kwargs, given=given)

        params = own + extra
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__qualname__, command.__doc__, command.__module__ = fn.__name__, fn.__qualname__, fn.__doc__, fn.__module__
        return command

    return decorate


def readable_metavars(app: typer.Typer) -> None:
    """Every option of every command without a metavar of its own gets a readable one (INT, NUMBER, TEXT;
    none for a flag) instead of the Python type Typer would show (<int>, <bool>)."""
    from typing import get_type_hints

    apps = [app]
    while apps:
        current = apps.pop()
        callbacks = [c.callback for c in current.registered_commands]
        if current.registered_callback is not None:
            callbacks.append(current.registered_callback.callback)
        apps += [g.typer_instance for g in current.registered_groups if g.typer_instance is not None]
        for callback in filter(None, callbacks):
            try:
                hints = get_type_hints(callback, include_extras=True)
            except Exception:  # noqa: BLE001 - a callback whose hints do not resolve keeps Typer's display
                continue
            for hint in hints.values():
                for info in getattr(hint, "__metadata__", ()):
                    if isinstance(info, typer.models.OptionInfo) and info.metavar is None:
                        info.metavar = _metavar(hint.__origin__)
            # The evaluated annotations, kept: a string annotation would be evaluated again into new options.
            callback.__annotations__ = hints


def _metavar(annotation: Any) -> str:
    base = base_type(annotation)
    if base is bool:
        return ""
    if base is list:
        inner = [a for a in get_args(_unwrap(annotation)) if a is not type(None)]
        return METAVARS.get(inner[0], "TEXT") if inner else "TEXT"
    return METAVARS.get(base, "TEXT")


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
