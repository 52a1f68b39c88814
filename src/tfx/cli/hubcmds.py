"""Commands about models and the Hub: models, pull, cache ls/rm, search (compare.py and envcmd.py hold
compare and env).

Registering them imports nothing heavy; huggingface_hub, rich and torch are imported inside the command
that needs them, so `tfx models`, `tfx env`, `tfx cache ls` and `tfx search` never load torch."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any, Optional

import typer

from tfx.cli import completion, options as o
from tfx.cli.common import check_format as _check_format, execute as _execute, setup as _setup
from tfx.io import print_json, print_table

MODELS_EXAMPLES = """Examples:

  tfx models

  tfx models --format json | jq -r '.[] | select(.cached) | .name'
"""
PULL_EXAMPLES = """Examples:

  tfx pull gpt2

  tfx pull --task summarize

  tfx pull Helsinki-NLP/opus-mt-en-de --task translate --revision main
"""
CACHE_EXAMPLES = """Examples:

  tfx cache ls

  tfx cache rm gpt2

  tfx cache rm --yes distilgpt2 t5-small
"""
SEARCH_EXAMPLES = """Examples:

  tfx search gpt2

  tfx search opus-mt-en --task translation --limit 5

  tfx search bert --task fill-mask --format json
"""
DEFAULT_SEARCH_LIMIT = 20
ListFormat = Annotated[str, typer.Option("--format", "-f", help="text (a table on a terminal, aligned columns on a pipe) or json.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the tfx app."""
    app.command("models", epilog=MODELS_EXAMPLES)(models)
    app.command("pull", epilog=PULL_EXAMPLES)(pull)
    app.command("search", epilog=SEARCH_EXAMPLES)(search)
    cache_app = typer.Typer(
        name="cache",
        help="The local model cache (huggingface_hub's): list and remove models.",
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    cache_app.command("ls", epilog=CACHE_EXAMPLES)(cache_ls)
    cache_app.command("rm", epilog=CACHE_EXAMPLES)(cache_rm)
    app.add_typer(cache_app, name="cache")


# ---- output ----------------------------------------------------------------------------------------------


def _params(n: int) -> str:
    if n <= 0:
        return "?"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _ago(timestamp: float) -> str:
    seconds = max(time.time() - timestamp, 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


# ---- tfx models ------------------------------------------------------------------------------------------


def models(
    fmt: ListFormat = "text",
    cached_only: Annotated[bool, typer.Option("--cached", help="Only the models in the local cache (tfx's catalogue and any other).")] = False,
) -> None:
    """The models tfx knows, by family, with their tasks, size, purpose and whether they are in the cache;
    then every other cached model, with the family and tasks its config.json gives."""

    def body() -> int:
        _setup()
        _check_format(fmt, ("text", "json"))
        from tfx.hub import listing

        entries = listing.model_entries(cached_only)
        if fmt == "json":
            print_json(entries)
            return 0
        from tfx import registry

        print_choosing_guide()
        for family in registry.FAMILIES:
            rows = [
                [e["name"], ", ".join(e["tasks"]) + (f" (default: {', '.join(e['default_for'])})" if e["default_for"] else ""),
                 _params(e["params"]), e["size_on_disk_str"] if e["cached"] else "-", e["about"]]
                for e in entries if e["family"] == family
            ]  # fmt: skip
            if rows:
                print()
                print_table(["model", "tasks", "params", "cached", "about"], rows, title=f"{family}: {registry.FAMILY_GUIDE[family]}")
        return 0

    _execute(body)


def print_choosing_guide() -> None:
    from tfx import registry

    commands = registry.FAMILY_COMMANDS
    lines = ["How to choose: pick the family that fits the job, then the size (bigger: better and slower)."]
    width = max(map(len, registry.FAMILIES))
    for family in registry.FAMILIES:
        lines.append(f"  {family.ljust(width)}  {registry.FAMILY_GUIDE[family]}  ->  {commands[family]}")
    lines.append("Any other model on the Hub works too: `tfx search` finds them, `tfx pull` fetches one.")
    sys.stdout.write("\n".join(lines) + "\n")


# ---- tfx pull --------------------------------------------------------------------------------------------


def pull(
    model: Annotated[Optional[str], typer.Argument(help="Model alias or Hub id (default: the default model of --task).", show_default=False, autocompletion=completion.complete_model)] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="generate, fill-mask, translate or summarize: check the model can do it (and pick the default model when none is given).", show_default=False, autocompletion=completion.complete_task)] = None,
    revision: o.Revision = None,
    offline: o.Offline = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
    engine: Annotated[str, typer.Option("--engine", help="ct2: also convert it for CTranslate2 (--engine ct2 runs), printing the converted copy's directory too.")] = "local",
    compute_type: o.ComputeType = "auto",
) -> None:
    """Download a model into the cache: config, tokenizer and one weights format only. Prints its directory."""

    def body() -> int:
        _setup(offline, quiet, verbose)
        from tfx import errors, hub, registry, userconfig

        hub.validate_revision(revision)
        wanted = registry.task_info(task).name if task else None
        name = userconfig.resolve(model) if model else (userconfig.default_for(wanted) or registry.default_model(wanted) if wanted else None)
        if not name:
            raise errors.UsageError("pull needs a model.", "Name one, e.g. `tfx pull gpt2`, or give --task for its default model.")
        if os.path.isdir(os.path.expanduser(name)) and name.startswith((".", "/", "~")):
            raise errors.TfxError(f"{name} is a local directory; there is nothing to pull.", "Use it directly with -m.")
        hub.check_name(name)
        found = hub.find_cached(name, revision)
        if found is not None:
            from tfx.loading import read_json

            _check_task(name, wanted, read_json(found[1] / "config.json"))
            size = sum(m.size for m in hub.cached_models() if m.repo_id == found[0])
            hub.say(f"{name} is already in the cache ({hub.format_size(size)}); nothing to download.")
            print(found[1], flush=True)
            return _pull_ct2(name, wanted, revision, compute_type) if engine == "ct2" else 0
        if hub.is_offline():
            raise errors.NotCached(f"{name} is not in the local cache and offline mode is on.", "Drop --offline / HF_HUB_OFFLINE to download it.")
        info = registry.lookup(name)
        repo_id = info.repo_id if info else name
        if info:
            _check_task(name, wanted, {})  # the registry knows its family: before any request
        plan = hub.plan_download(repo_id, revision, name, task=wanted)  # else checked on the Hub's config summary
        what = f"{name} ({repo_id} @ {plan.commit[:7]})" if repo_id != name else f"{name} @ {plan.commit[:7]}"
        hub.say(f"pulling {what}: {plan.describe()}")
        started = time.monotonic()
        path = hub.fetch(plan, name, progress=sys.stderr.isatty() and not quiet)
        hub.say(f"pulled {name} in {time.monotonic() - started:.1f} s")
        print(path, flush=True)
        return _pull_ct2(name, wanted, revision, compute_type) if engine == "ct2" else 0

    _execute(body)


def _pull_ct2(name: str, task: str | None, revision: str | None, compute_type: str) -> int:
    """`tfx pull --engine ct2`: convert the cached model now (the task: --task, or the first the ct2 backend
    runs for its kind), so the first `--engine ct2` run starts at once. Prints the converted directory."""
    from tfx import ct2, loading
    from tfx.tasks import ct2 as ct2_tasks

    ct2.require()
    resolved_task = task
    if resolved_task is None:
        from tfx import hub

        found = hub.find_cached(name, revision)
        kind = loading.read_json(found[1] / "config.json").get("model_type", "") if found else ""
        resolved_task = (ct2.MODEL_TYPES.get(kind) or ("generate",))[0]
    prepared = loading.prepare(name, resolved_task, None, revision, download=False)
    ct2_tasks.check_model(prepared)
    device, _ = ct2.pick_device("auto")
    print(ct2_tasks.converted_path(prepared, ct2.pick_compute_type(compute_type, device)), flush=True)
    return 0


def _check_task(name: str, task: str | None, config: dict) -> None:
    """Fail with the family advice when the model cannot do the task (config from the Hub or the cache)."""
    if not task:
        return
    from tfx import registry

    registry.check_model(name, task, registry.family_of(registry.lookup(name), config), config)


# ---- tfx cache ls / rm -----------------------------------------------------------------------------------


def cache_ls(fmt: ListFormat = "text") -> None:
    """The models in the local cache: size on disk, revisions, last used."""

    def body() -> int:
        _setup()
        _check_format(fmt, ("text", "json"))
        from tfx import hub

        from tfx import copies

        scan = hub.scan_cache()
        cached = hub.cached_models(scan)
        converted: dict[str, list] = {}  # repo id -> its converted copies, every backend's (tfx.copies, beside the hub cache)
        for copy in copies.converted():
            converted.setdefault(copy.repo_id.lower(), []).append(copy)
        if fmt == "json":
            print_json(
                [
                    {"name": m.name, "repo_id": m.repo_id, "size_on_disk": m.size, "revisions": m.commits, "refs": m.refs,
                     "last_used": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(m.last_used)), "path": str(m.path),
                     "ct2": [{"quantization": c.quantization, "ctranslate2": c.version, "commit": c.commit, "size_on_disk": c.size, "path": str(c.path)}
                             for c in converted.get(m.repo_id.lower(), []) if c.backend == "ct2"],
                     "converted": [{"backend": c.backend, "head": c.head or None, "quantization": c.quantization, "version": c.version, "commit": c.commit,
                                    "size_on_disk": c.size, "path": str(c.path)} for c in converted.get(m.repo_id.lower(), [])]}
                    for m in cached
                ]
            )  # fmt: skip
            return 0
        if not cached:
            hub.say(f"no models in the cache ({hub.cache_dir()}). `tfx pull MODEL` adds one.")
            return 0
        rows = [
            [m.repo_id if m.name == m.repo_id else f"{m.repo_id} ({m.name})", hub.format_size(m.size),
             f"{len(m.commits)}" + (f" ({', '.join(m.refs)})" if m.refs else ""), _ago(m.last_used),
             ", ".join(f"{c.backend} {c.head + ' ' if c.head else ''}{c.quantization} ({hub.format_size(c.size)})" for c in converted.get(m.repo_id.lower(), [])) or "-"]
            for m in cached
        ]  # fmt: skip
        print_table(["model", "size", "revisions", "last used", "converted copies"], rows)
        hub.say(f"{len(cached)} models, {hub.format_size(scan.size_on_disk)} in {hub.cache_dir()}")
        return 0

    _execute(body)


def cache_rm(
    names: Annotated[list[str], typer.Argument(help="Models to remove (alias or Hub id); an alias removes all its cached ids.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove models from the local cache (asks first): the named repositories' folders, nothing else."""

    def body() -> int:
        _setup()
        from tfx import errors, hub

        cached = hub.cached_models()
        targets = []
        for name in names:
            found = hub.matching_cached(name, cached)
            if not found:
                raise errors.TfxError(f"{name} is not in the cache.", "`tfx cache ls` lists what is.")
            targets += [m for m in found if m not in targets]
        folders = [hub.repo_folder(m) for m in targets]  # refuses anything but real folders in the cache
        from tfx import copies as converted_copies

        copies = converted_copies.converted({m.repo_id for m in targets})  # their converted copies (ct2, onnx) go with them
        listing = ", ".join(f"{m.repo_id} ({hub.format_size(m.size)})" for m in targets)
        if copies:
            listing += f" and {len(copies)} converted cop{'y' if len(copies) == 1 else 'ies'} ({hub.format_size(sum(c.size for c in copies))})"
        if not yes and not _confirm(f"Delete {listing} from {hub.cache_dir()}?"):
            hub.say("nothing deleted.")
            return 1
        freed = hub.delete_cached(targets) + converted_copies.remove(copies)
        hub.say(f"deleted {', '.join([str(f.name) for f in folders] + [c.path.name for c in copies])}; freed {hub.format_size(freed)}.")
        return 0

    _execute(body)


def _confirm(question: str) -> bool:
    """Ask on stderr. No answer is no: stdin closed, at its end, or unreadable (never an "Abort" error)."""
    import click

    if sys.stdin is None or sys.stdin.closed:
        print(f"{question} [y/N]: no answer (stdin is closed)", file=sys.stderr)
        return False
    try:
        return typer.confirm(question, default=False, err=True)
    except (click.exceptions.Abort, EOFError, OSError, RuntimeError, UnicodeDecodeError):
        print(file=sys.stderr)
        return False


# ---- tfx search ------------------------------------------------------------------------------------------


def search(
    query: Annotated[Optional[str], typer.Argument(help="Words to look for in model ids.", show_default=False)] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="fill-mask, text-generation, translation or summarization (tfx's task names work too).", show_default=False, autocompletion=completion.complete_task)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most models to list.")] = DEFAULT_SEARCH_LIMIT,
    fmt: ListFormat = "text",
    offline: o.Offline = False,
) -> None:
    """Search the Hub for transformers models, most downloaded first: id, task, downloads, likes."""

    def body() -> int:
        _setup(offline)
        _check_format(fmt, ("text", "json"))
        from tfx import hub, registry
        from tfx.errors import UsageError

        tag = registry.task_info(task).pipeline_tag if task else None
        if limit < 1:
            raise UsageError("--limit must be at least 1.", f"Leave it out for {DEFAULT_SEARCH_LIMIT}.")
        rows = hub.search(query, tag, limit)
        if fmt == "json":
            print_json(rows)
        elif not rows:
            hub.say("no models found." + (" Try fewer words or no --task." if query or task else ""))
        else:
            print_table(["model", "task", "downloads", "likes"], [[r["id"], r["task"] or "-", f"{r['downloads']:,}", f"{r['likes']:,}"] for r in rows])
        return 0

    _execute(body)
