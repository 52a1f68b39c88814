"""Shell completion's value completers (Typer's own completion: `tfx --install-completion`, `tfx
--show-completion`): model names from the user's aliases, the local Hugging Face cache and tfx's
catalogue; task names; alias names and config keys. Each runs on every Tab, so it reads directory names and
the small config file only: no huggingface_hub scan, no torch."""

from __future__ import annotations

import os

CHAT = "chat"  # `tfx chat` takes a default model of its own: chat.model


def complete_model(incomplete: str) -> list[tuple[str, str]]:
    """Aliases first, then cached Hub ids, then the catalogue; a path is left to the shell's file completion."""
    if incomplete.startswith((".", "/", "~")):
        return []
    from tfx import registry

    found: dict[str, str] = {}
    for name, target in _aliases().items():
        found.setdefault(name, f"alias of {target}")
    for repo_id in cached_repo_ids():
        info = registry.lookup(repo_id)
        found.setdefault(repo_id, "cached" + (f": {info.about}" if info else ""))
    for m in registry.MODELS:
        found.setdefault(m.name, m.about)
    return _matching(found, incomplete)


def complete_task(incomplete: str) -> list[tuple[str, str]]:
    from tfx import registry

    return _matching({t.name: t.pipeline_tag for t in registry.TASK_TABLE}, incomplete)


def complete_alias(incomplete: str) -> list[tuple[str, str]]:
    return _matching({name: target for name, target in _aliases().items()}, incomplete)


def complete_config_key(incomplete: str) -> list[tuple[str, str]]:
    return _matching({key: about for key, about in config_keys().items()}, incomplete)


def config_keys() -> dict[str, str]:
    """The keys `tfx config set` takes, with what each does."""
    from tfx import registry

    keys = {f"{t.name}.model": f"the model tfx {t.name} runs without -m" for t in registry.TASK_TABLE}
    keys[f"{CHAT}.model"] = "the model tfx chat talks to without -m"
    keys.update({f"aliases.{name}": f"alias of {target}" for name, target in _aliases().items()})
    return keys


def cached_repo_ids() -> list[str]:
    """owner/name of each model folder in the cache (models--owner--name), without reading inside them."""
    from tfx.hub.settings import cache_dir

    try:
        names = os.listdir(cache_dir())
    except OSError:
        return []
    ids = [n[len("models--") :].replace("--", "/", 1) for n in names if n.startswith("models--")]
    return sorted(i for i in ids if i and not i.startswith("/"))


def _aliases() -> dict[str, str]:
    from tfx import errors, userconfig

    try:
        return userconfig.aliases()
    except errors.TfxError:  # a broken config says so when a command runs; a Tab just offers nothing from it
        return {}


def _matching(candidates: dict[str, str], incomplete: str) -> list[tuple[str, str]]:
    prefix = incomplete.lower()
    return [(name, about) for name, about in candidates.items() if name.lower().startswith(prefix)]
