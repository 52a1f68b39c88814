"""The settings schema: every task setting is declared once, as a dataclass field whose metadata (`Opt`) says
how each surface shows it: its CLI flags, help and help panel, its bounds, its name on tfx's task endpoints
and in OpenAI's bodies, and whether the CLI and the server take it. The Typer options of the task commands
(cli.options), `tfx compare`, `tfx chat`, the server's request models (serve.schemas) and the bounds check
(`check_bounds`, run by every `Settings.validate`) all read this one declaration, as llm's per-model Options
and vLLM's request models are read by their CLIs and servers. Adding a setting is one `option(...)` line.

A bad value is a `SettingError`: a message template over field names, rendered with the CLI's flags by
default and with the request's field names by the server (`render(namer)`), so no answer names a flag the
client never sent. Imports nothing heavy."""

from __future__ import annotations

import functools
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, get_type_hints

from tfx.errors import UsageError

# Help panels of the task commands, in the order they are shown (the shared ones live in cli.options).
TASK_PANEL = "Task settings"
GENERATION_PANEL = "Generation"


@dataclass(frozen=True)
class Opt:
    """How one setting appears on each surface."""

    help: str = ""
    flags: tuple[str, ...] = ()  # CLI spellings, long first; () -> ("--field-name",)
    off: str | None = None  # a bool's off switch (do_sample: "--greedy"); None: a plain flag
    metavar: str | None = None  # None: from the type (INT, FLOAT, TEXT)
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    http: str | None = None  # its name on tfx's task endpoints (translate's src: "from"); None: the field name
    openai: str | None = None  # its name in OpenAI's bodies, where OpenAI has it (max_new_tokens: "max_tokens")
    cli: bool = True  # a flag of the task command (rank's query is its argument instead)
    server: bool = True  # taken by the server's task endpoint
    panel: str = TASK_PANEL
    words: bool = False  # a comma-separated list on the command line ("a,b"), a list in a request
    many: bool = False  # a repeatable option (--stop A --stop B), a list in a request
    file: bool = False  # the CLI value is a file whose text is the value (--json-schema FILE)


def option(default: Any = None, **opt: Any) -> Any:
    """A settings field: its default and how each surface shows it."""
    return field(default=default, metadata={"tfx": Opt(**opt)})


@dataclass(frozen=True)
class SettingField:
    name: str
    type: Any  # the resolved annotation, e.g. int | None
    default: Any
    opt: Opt

    @property
    def flag(self) -> str:
        return self.opt.flags[0] if self.opt.flags else "--" + self.name.replace("_", "-")

    @property
    def http_name(self) -> str:
        return self.opt.http or self.name


@functools.lru_cache(maxsize=None)
def schema(cls: type) -> tuple[SettingField, ...]:
    """The settings fields of a settings class, base class fields first."""
    hints = get_type_hints(cls)
    out = []
    for f in fields(cls):
        opt = f.metadata.get("tfx")
        if opt is None:
            continue
        default = f.default if f.default is not MISSING else None
        out.append(SettingField(f.name, hints[f.name], default, opt))
    return tuple(out)


def schema_field(cls: type, name: str) -> SettingField | None:
    return next((f for f in schema(cls) if f.name == name), None)


Namer = Callable[[str], str]


def cli_namer(cls: type) -> Namer:
    """Field name -> its CLI flag (what a local run's message names)."""
    return lambda name: (schema_field(cls, name).flag if schema_field(cls, name) else "--" + name.replace("_", "-"))


def http_namer(cls: type) -> Namer:
    """Field name -> its name in a task endpoint's body."""
    return lambda name: (schema_field(cls, name).http_name if schema_field(cls, name) else name)


class SettingError(UsageError):
    """A bad setting. `template` and `hint_template` name fields as {field}; `render(namer)` puts each
    surface's own name in (the CLI's flag by default)."""

    def __init__(self, cls: type, template: str, hint_template: str | None = None, **values: Any):
        self.cls, self.template, self.hint_template, self.values = cls, template, hint_template, values
        message, hint = self.render(cli_namer(cls))
        super().__init__(message, hint)

    @property
    def fields(self) -> tuple[str, ...]:
        """The settings named in the message, first the one at fault."""
        import string

        names = [p[1] for p in string.Formatter().parse(self.template + (self.hint_template or "")) if p[1]]
        return tuple(dict.fromkeys(n for n in names if n not in self.values))

    def render(self, namer: Namer) -> tuple[str, str | None]:
        names = {name: namer(name) for name in self.fields}
        fill = {**names, **self.values}
        return self.template.format(**fill), (self.hint_template.format(**fill) if self.hint_template else None)

    def __reduce__(self):  # picklable (Ray ships errors) with its template
        return (_rebuild_setting_error, (self.cls, self.template, self.hint_template, self.values))


def _rebuild_setting_error(cls, template, hint_template, values):
    return SettingError(cls, template, hint_template, **values)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def check_bounds(settings: Any) -> None:
    """Each set value against its field's bounds and choices, and numbers finite: the one bounds check."""
    cls = type(settings)
    for f in schema(cls):
        value = getattr(settings, f.name)
        if value is None:
            continue
        opt = f.opt
        numeric = any(b is not None for b in (opt.ge, opt.gt, opt.le))
        if numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
                raise SettingError(cls, "{%s} must be a finite number (got {value})." % f.name, "Pass a plain number.", value=value)
            low_ok = (opt.ge is None or value >= opt.ge) and (opt.gt is None or value > opt.gt)
            high_ok = opt.le is None or value <= opt.le
            if not (low_ok and high_ok):
                raise SettingError(cls, "{%s} must be %s (got {value})." % (f.name, describe_bounds(opt)), _example_hint(f), value=value)
        if opt.choices is not None and value not in opt.choices:
            raise SettingError(cls, "unknown {%s} '{value}'." % f.name, "Use one of: %s." % ", ".join(opt.choices), value=value)


def describe_bounds(opt: Opt) -> str:
    low = opt.gt if opt.gt is not None else opt.ge
    if opt.le is not None and low is not None:
        return f"in ({_number(low)}, {_number(opt.le)}]" if opt.gt is not None else f"between {_number(low)} and {_number(opt.le)}"
    if opt.gt is not None:
        return f"above {_number(opt.gt)}"
    if opt.ge is not None:
        return "at least 1" if opt.ge == 1 else f"{_number(opt.ge)} or more" if opt.ge == 0 else f"at least {_number(opt.ge)}"
    return f"at most {_number(opt.le)}"


def _example_hint(f: SettingField) -> str:
    if f.opt.gt is not None and f.opt.le is not None:
        return "Pass a number in that range, e.g. {%s} %s." % (f.name, _number(f.opt.le * 0.95 if f.opt.le <= 1 else f.opt.le))
    return "Pass a number in that range."
