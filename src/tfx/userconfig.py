"""The user's own config: model aliases and a default model per task, in one small TOML file
($TFX_CONFIG, else $XDG_CONFIG_HOME/tfx/config.toml, else ~/.config/tfx/config.toml), and tfx's state
folder ($XDG_STATE_HOME/tfx, else ~/.local/state/tfx: chat history and the last conversation).

    [aliases]
    story = "acme/story-model-1b"

    [generate]
    model = "distilgpt2"

`resolve(name)` (an alias -> its model, anything else unchanged) and `default_for(task)` are the one
resolution every surface uses: `spec.build` (every task command, `tfx chat`), `tfx pull` and `tfx serve`.
Read with tomllib; written by the small writer below (the file only ever holds tables of strings).
Standard library only; imports nothing of tfx but its errors."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from tfx.errors import TfxError, UsageError

CONFIG_ENV = "TFX_CONFIG"
ALIASES = "aliases"
# Alias names: a word, never a Hub id (no "/") nor a path; kept to characters every shell leaves alone.
ALIAS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_CONFIG_BYTES = 1 << 20
MAX_ALIAS_DEPTH = 8

_cache: dict[str, Any] = {}  # path -> (stat signature, parsed data): the server resolves per request


def config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tfx" / "config.toml"


def state_dir() -> Path:
    """Where tfx keeps what it learns between runs (created by whoever writes there)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "tfx"


def load() -> dict[str, dict[str, str]]:
    """The config as {table: {key: value}}; {} when there is no file. A file that is not a config tfx can
    read is a TfxError naming it (one line), never a traceback."""
    path = config_path()
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _broken(path, exc.strerror or type(exc).__name__) from None
    signature = (info.st_mtime_ns, info.st_size, info.st_ino)
    cached = _cache.get(str(path))
    if cached is not None and cached[0] == signature:
        return cached[1]
    if not path.is_file():
        raise _broken(path, "it is not a regular file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise _broken(path, f"it is larger than {MAX_CONFIG_BYTES // 1024} kB")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise _broken(path, str(exc).splitlines()[0]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _broken(path, getattr(exc, "strerror", None) or type(exc).__name__) from None
    for table, values in data.items():
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise _broken(path, f"[{table}] must be a table of strings (e.g. model = \"gpt2\")")
    _cache[str(path)] = (signature, data)
    return data


def _broken(path: Path, why: str) -> TfxError:
    return TfxError(f"the tfx config {path} is broken: {why}.", f"Fix or remove it (or point {CONFIG_ENV} at another file).")


def aliases() -> dict[str, str]:
    return dict(load().get(ALIASES, {}))


def resolve(name: str) -> str:
    """The model an alias stands for (followed through aliases of aliases); any other name unchanged."""
    table = load().get(ALIASES, {})
    seen = [name]
    while name in table:
        name = table[name]
        if name in seen or len(seen) > MAX_ALIAS_DEPTH:
            raise TfxError(f"the alias {seen[0]} loops: {' -> '.join(seen + [name])}.", f"Fix it: tfx alias set {seen[0]} MODEL (in {config_path()}).")
        seen.append(name)
    return name


def aliases() -> dict[str, str]:
    """Every alias of the config, each resolved to the model it finally names (`tfx serve` takes them all)."""
    return {name: resolve(name) for name in load().get(ALIASES, {})}


def default_for(task: str) -> str | None:
    """The model the config names for a task ([generate] model = "..."), resolved; None when it names none."""
    model = load().get(task, {}).get("model")
    return resolve(model) if model else None


def get(key: str) -> str | None:
    table, name = split_key(key)
    return load().get(table, {}).get(name)


def items() -> list[tuple[str, str]]:
    """Every setting as (table.key, value), in the file's order."""
    return [(f"{table}.{name}", value) for table, values in load().items() for name, value in values.items()]


def set_value(key: str, value: str) -> Path:
    table, name = split_key(key)
    data = {t: dict(v) for t, v in load().items()}
    data.setdefault(table, {})[name] = value
    return _write(data)


def remove(key: str) -> bool:
    """Drop a setting; False when it was not set."""
    table, name = split_key(key)
    data = {t: dict(v) for t, v in load().items()}
    if name not in data.get(table, {}):
        return False
    del data[table][name]
    if not data[table]:
        del data[table]
    _write(data)
    return True


def split_key(key: str) -> tuple[str, str]:
    table, dot, name = key.partition(".")
    if not dot or not table or not name:
        raise UsageError(f"'{key}' is not a config key.", "Keys are TABLE.NAME, e.g. generate.model or aliases.story.")
    return table, name


def check_alias_name(name: str) -> None:
    if not ALIAS_NAME.match(name):
        raise UsageError(f"'{name}' cannot be an alias.", "An alias is one word of letters, digits, '.', '_' or '-' (no '/': that is a Hub id).")


def dumps(data: dict[str, dict[str, str]]) -> str:
    """TOML for tables of strings: keys and values as basic strings (JSON's escapes are TOML's)."""
    blocks = []
    for table, values in data.items():
        lines = [f"[{json.dumps(table, ensure_ascii=False)}]" if not re.fullmatch(r"[A-Za-z0-9_-]+", table) else f"[{table}]"]
        lines += [f"{json.dumps(k, ensure_ascii=False)} = {json.dumps(v, ensure_ascii=False)}" for k, v in values.items()]
        blocks.append("\n".join(lines))
    return "# tfx config: `tfx alias` and `tfx config` write it; edit it by hand if you like.\n\n" + "\n\n".join(blocks) + "\n"


def _write(data: dict[str, dict[str, str]]) -> Path:
    """Atomically: a reader (a running server) sees the old file or the new one, never half of one."""
    path = config_path()
    text = dumps(data)
    assert tomllib.loads(text) == data  # the writer and the reader agree
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    _cache.pop(str(path), None)
    return path
