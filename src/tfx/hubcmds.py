"""Commands about models and the Hub: models, pull, cache ls/rm, search, compare, env.

Registering them imports nothing heavy; huggingface_hub, rich and torch are imported inside the command
that needs them, so `tfx models`, `tfx env`, `tfx cache ls` and `tfx search` never load torch."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated, Any, Optional

import typer

from tfx import options as o

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
COMPARE_EXAMPLES = """Examples:

  tfx compare generate "Once upon a time" -m gpt2 -m distilgpt2

  tfx compare translate "The weather is beautiful today." --to de -m t5-small -m Helsinki-NLP/opus-mt-en-de

  tfx compare fill-mask "Paris is the [MASK] of France." -m bert-base-uncased -m roberta-base --format jsonl
"""
ENV_EXAMPLES = """Examples:

  tfx env

  tfx env --no-devices --format json
"""

ListFormat = Annotated[str, typer.Option("--format", "-f", help="text (a table on a terminal, aligned columns on a pipe) or json.")]
SEARCH_TASKS = ("fill-mask", "text-generation", "translation", "summarization")  # the Hub's pipeline tags
TASK_ALIASES = {"text-generation": "generate", "translation": "translate", "summarization": "summarize"}
DEFAULT_SEARCH_LIMIT = 20
DEVICE_PROBE_TIMEOUT_S = 60

# Which compare options each task takes: the same ones its own command has.
COMPARE_OPTIONS = {
    "generate": {"max_new_tokens", "min_new_tokens", "num_beams", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "seed", "continuation_only"},
    "fill-mask": {"top_k", "targets"},
    "translate": {"src", "tgt", "max_new_tokens", "min_new_tokens", "num_beams"},
    "summarize": {"max_new_tokens", "min_new_tokens", "num_beams"},
}
OPTION_FLAGS = {"src": "--from", "tgt": "--to", "do_sample": "--do-sample/--greedy"}


def register(app: typer.Typer) -> None:
    """Add this module's commands to the tfx app."""
    app.command("models", epilog=MODELS_EXAMPLES)(models)
    app.command("pull", epilog=PULL_EXAMPLES)(pull)
    app.command("search", epilog=SEARCH_EXAMPLES)(search)
    app.command("compare", epilog=COMPARE_EXAMPLES)(compare)
    app.command("env", epilog=ENV_EXAMPLES)(env)
    cache_app = typer.Typer(
        name="cache",
        help="The local model cache (huggingface_hub's): list and remove models.",
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    cache_app.command("ls", epilog=CACHE_EXAMPLES)(cache_ls)
    cache_app.command("rm", epilog=CACHE_EXAMPLES)(cache_rm)
    app.add_typer(cache_app, name="cache")


def _execute(body) -> None:
    from tfx.cli import execute  # lazily: cli imports this module

    execute(body)


def _setup(offline: bool = False, quiet: bool = False, verbose: bool = False) -> None:
    from tfx import hub
    from tfx.cli import setup_logging

    hub.configure_env(offline)
    setup_logging(quiet, verbose)


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    from tfx.errors import UsageError

    if fmt not in allowed:
        raise UsageError(f"unknown --format '{fmt}'.", f"Use one of: {', '.join(allowed)}.")


def _say(message: str) -> None:
    from tfx import hub

    hub.say(message)


# ---- output ----------------------------------------------------------------------------------------------


def print_table(columns: list[str], rows: list[list[str]], title: str | None = None) -> None:
    """A rich table on a terminal; on a pipe, plain aligned columns with no colour, one row per line."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, title=title, title_justify="left")
        for row in rows:
            table.add_row(*row)
        Console(file=sys.stdout, highlight=False, emoji=False).print(table)
        return
    from tfx.io import escape_line

    cells = [[escape_line(str(c)) for c in row] for row in [columns, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [title] if title else []
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def _params(n: int) -> str:
    if n <= 0:
        return "?"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _ago(timestamp: float) -> str:
    seconds = max(time.time() - timestamp, 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


# ---- tfx models ------------------------------------------------------------------------------------------


def models(fmt: ListFormat = "text") -> None:
    """The models tfx knows, by family, with their tasks, size, purpose and whether they are in the cache."""

    def body() -> int:
        _setup()
        _check_format(fmt, ("text", "json"))
        entries = registry_entries()
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
            print()
            print_table(["model", "tasks", "params", "cached", "about"], rows, title=f"{family}: {registry.FAMILY_GUIDE[family]}")
        return 0

    _execute(body)


def registry_entries() -> list[dict[str, Any]]:
    from tfx import hub, registry

    cached = hub.cached_models()
    defaults = {
        "generate": registry.DEFAULT_GENERATE_MODEL,
        "fill-mask": registry.DEFAULT_FILL_MASK_MODEL,
        "translate": registry.DEFAULT_T5_TRANSLATE_MODEL,
        "summarize": registry.DEFAULT_SUMMARIZE_MODEL,
    }
    entries = []
    for m in registry.MODELS:
        found = hub.find_cached(m.name)
        size = sum(c.size for c in hub.matching_cached(m.name, cached)) if found else 0
        entries.append(
            {
                "name": m.name, "repo_id": m.repo_id, "family": m.family, "tasks": list(m.tasks), "params": m.params,
                "about": m.about, "default_for": [t for t, d in defaults.items() if d == m.name],
                "cached": found is not None, "size_on_disk": size, "size_on_disk_str": hub.format_size(size) if found else "",
            }
        )  # fmt: skip
    return entries


def print_choosing_guide() -> None:
    from tfx import registry

    commands = {registry.ENCODER_ONLY: "tfx fill-mask", registry.DECODER_ONLY: "tfx generate", registry.ENCODER_DECODER: "tfx translate, tfx summarize"}
    lines = ["How to choose: pick the family that fits the job, then the size (bigger: better and slower)."]
    width = max(map(len, registry.FAMILIES))
    for family in registry.FAMILIES:
        lines.append(f"  {family.ljust(width)}  {registry.FAMILY_GUIDE[family]}  ->  {commands[family]}")
    lines.append("Any other model on the Hub works too: `tfx search` finds them, `tfx pull` fetches one.")
    sys.stdout.write("\n".join(lines) + "\n")


# ---- tfx pull --------------------------------------------------------------------------------------------


def pull(
    model: Annotated[Optional[str], typer.Argument(help="Model alias or Hub id (default: the default model of --task).", show_default=False)] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="generate, fill-mask, translate or summarize: check the model can do it (and pick the default model when none is given).", show_default=False)] = None,
    revision: o.Revision = None,
    offline: o.Offline = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Download a model into the cache: config, tokenizer and one weights format only. Prints its directory."""

    def body() -> int:
        _setup(offline, quiet, verbose)
        from tfx import hub, registry
        from tfx.errors import TfxError, UsageError

        wanted = _task_name(task) if task else None
        name = model or (_default_model(wanted) if wanted else None)
        if not name:
            raise UsageError("pull needs a model.", "Name one, e.g. `tfx pull gpt2`, or give --task for its default model.")
        if os.path.isdir(os.path.expanduser(name)) and name.startswith((".", "/", "~")):
            raise TfxError(f"{name} is a local directory; there is nothing to pull.", "Use it directly with -m.")
        hub.check_name(name)
        found = hub.find_cached(name, revision)
        if found is not None:
            _check_task(name, found[0], wanted, None, found[1])
            size = sum(m.size for m in hub.cached_models() if m.repo_id == found[0])
            _say(f"{name} is already in the cache ({hub.format_size(size)}); nothing to download.")
            print(found[1], flush=True)
            return 0
        if hub.is_offline():
            raise TfxError(f"{name} is not in the local cache and offline mode is on.", "Drop --offline / HF_HUB_OFFLINE to download it.")
        info = registry.lookup(name)
        repo_id = info.repo_id if info else name
        if wanted and info:
            _check_task(name, repo_id, wanted, {}, None)  # before any request
        plan = hub.plan_download(repo_id, revision, name)
        if wanted and not info:
            _check_task(name, repo_id, wanted, plan.config, None)
        what = f"{name} ({repo_id} @ {plan.commit[:7]})" if repo_id != name else f"{name} @ {plan.commit[:7]}"
        _say(f"pulling {what}: {len(plan.files)} files, {hub.format_size(plan.total)}")
        started = time.monotonic()
        path = hub.fetch(plan, name, progress=sys.stderr.isatty() and not quiet)
        _say(f"pulled {name} in {time.monotonic() - started:.1f} s")
        print(path, flush=True)
        return 0

    _execute(body)


def _task_name(task: str) -> str:
    from tfx import registry
    from tfx.errors import UsageError

    name = TASK_ALIASES.get(task.lower(), task.lower())
    if name not in registry.TASKS:
        raise UsageError(f"unknown task '{task}'.", f"Use one of: {', '.join(registry.TASKS)}.")
    return name


def _default_model(task: str) -> str:
    from tfx import registry

    return registry.DEFAULT_T5_TRANSLATE_MODEL if task == "translate" else registry.default_model(task)


def _check_task(name: str, repo_id: str, task: str | None, config: dict | None, path) -> None:
    """Fail with the family advice when the model cannot do the task (config from the Hub or the cache)."""
    if not task:
        return
    from pathlib import Path

    from tfx import hub, registry
    from tfx.loading import check_task, read_json

    if config is None:
        config = read_json(Path(path) / "config.json")
    check_task(hub.Resolved(name, repo_id, Path(path or "."), registry.lookup(name)), task, config)


# ---- tfx cache ls / rm -----------------------------------------------------------------------------------


def cache_ls(fmt: ListFormat = "text") -> None:
    """The models in the local cache: size on disk, revisions, last used."""

    def body() -> int:
        _setup()
        _check_format(fmt, ("text", "json"))
        from tfx import hub

        scan = hub.scan_cache()
        cached = hub.cached_models(scan)
        if fmt == "json":
            print_json(
                [
                    {"name": m.name, "repo_id": m.repo_id, "size_on_disk": m.size, "revisions": m.commits, "refs": m.refs,
                     "last_used": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(m.last_used)), "path": str(m.path)}
                    for m in cached
                ]
            )  # fmt: skip
            return 0
        if not cached:
            _say(f"no models in the cache ({hub.cache_dir()}). `tfx pull MODEL` adds one.")
            return 0
        rows = [
            [m.repo_id if m.name == m.repo_id else f"{m.repo_id} ({m.name})", hub.format_size(m.size),
             f"{len(m.commits)}" + (f" ({', '.join(m.refs)})" if m.refs else ""), _ago(m.last_used)]
            for m in cached
        ]  # fmt: skip
        print_table(["model", "size", "revisions", "last used"], rows)
        _say(f"{len(cached)} models, {hub.format_size(scan.size_on_disk)} in {hub.cache_dir()}")
        return 0

    _execute(body)


def cache_rm(
    names: Annotated[list[str], typer.Argument(help="Models to remove (alias or Hub id); an alias removes all its cached ids.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove models from the local cache (asks first)."""

    def body() -> int:
        _setup()
        from tfx import hub
        from tfx.errors import TfxError

        scan = hub.scan_cache()
        cached = hub.cached_models(scan)
        targets = []
        for name in names:
            found = hub.matching_cached(name, cached)
            if not found:
                raise TfxError(f"{name} is not in the cache.", "`tfx cache ls` lists what is.")
            targets += [m for m in found if m not in targets]
        strategy = scan.delete_revisions(*[c for m in targets for c in m.commits])
        listing = ", ".join(f"{m.repo_id} ({hub.format_size(m.size)})" for m in targets)
        if not yes and not _confirm(f"Delete {listing} from {hub.cache_dir()}?"):
            _say("nothing deleted.")
            return 1
        strategy.execute()
        _say(f"deleted {listing}; freed {hub.format_size(strategy.expected_freed_size)}.")
        return 0

    _execute(body)


def _confirm(question: str) -> bool:
    import click

    try:
        return typer.confirm(question, default=False, err=True)
    except click.exceptions.Abort:  # stdin closed: no answer is no
        print(file=sys.stderr)
        return False


# ---- tfx search ------------------------------------------------------------------------------------------


def search(
    query: Annotated[Optional[str], typer.Argument(help="Words to look for in model ids.", show_default=False)] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="fill-mask, text-generation, translation or summarization (tfx's task names work too).", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most models to list.")] = DEFAULT_SEARCH_LIMIT,
    fmt: ListFormat = "text",
    offline: o.Offline = False,
) -> None:
    """Search the Hub for transformers models, most downloaded first: id, task, downloads, likes."""

    def body() -> int:
        _setup(offline)
        _check_format(fmt, ("text", "json"))
        from tfx import hub
        from tfx.errors import UsageError

        tag = None
        if task:
            tag = hub.PIPELINE_TAGS.get(task.lower(), task.lower() if task.lower() in SEARCH_TASKS else None)
            if tag is None:
                raise UsageError(f"unknown --task '{task}'.", f"Use one of: {', '.join(SEARCH_TASKS)}.")
        if limit < 1:
            raise UsageError("--limit must be at least 1.", f"Leave it out for {DEFAULT_SEARCH_LIMIT}.")
        rows = hub.search(query, tag, limit)
        if fmt == "json":
            print_json(rows)
        elif not rows:
            _say("no models found." + (" Try fewer words or no --task." if query or task else ""))
        else:
            print_table(["model", "task", "downloads", "likes"], [[r["id"], r["task"] or "-", f"{r['downloads']:,}", f"{r['likes']:,}"] for r in rows])
        return 0

    _execute(body)


# ---- tfx compare -----------------------------------------------------------------------------------------


def compare(
    task: Annotated[str, typer.Argument(help="generate, fill-mask, translate or summarize.", show_default=False)],
    texts: Annotated[list[str], typer.Argument(help="The input (several inputs: each goes through every model).", show_default=False)],
    models: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A model to compare; repeat for each.", show_default=False)] = None,
    to: Annotated[Optional[str], typer.Option("--to", "-t", help="translate: target language (ISO code).", show_default=False)] = None,
    src: Annotated[Optional[str], typer.Option("--from", help="translate: source language (default en).", show_default=False)] = None,
    max_new_tokens: o.MaxNewTokens = None,
    min_new_tokens: o.MinNewTokens = None,
    num_beams: o.NumBeams = None,
    do_sample: Annotated[Optional[bool], typer.Option("--do-sample/--greedy", help="generate: sample instead of the model's default decoding.", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option(help="generate: sampling temperature.", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="generate: sample from the k likeliest tokens; fill-mask: list k candidates.", show_default=False)] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="generate: nucleus sampling mass.", show_default=False)] = None,
    repetition_penalty: Annotated[Optional[float], typer.Option(help="generate: penalty for repeated tokens.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="generate: random seed, the same for every model.", show_default=False)] = None,
    continuation_only: Annotated[bool, typer.Option("--continuation-only", help="generate: show only the new text.")] = False,
    targets: Annotated[Optional[str], typer.Option("--targets", help="fill-mask: comma-separated candidate words.", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (a table: model, output, seconds) or jsonl (one object per model and input).")] = "text",
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Run the same input, with the same options, through several models and show their outputs side by side."""
    given = dict(
        src=src, tgt=to, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams,
        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
        seed=seed, continuation_only=continuation_only or None, targets=targets,
    )  # fmt: skip

    def body() -> int:
        _setup(offline, quiet, verbose)
        _check_format(fmt, ("text", "jsonl"))
        name = _task_name(task)
        params = _compare_params(name, {k: v for k, v in given.items() if v is not None})
        rows = run_comparison(name, texts, list(models or []), params, device, dtype, trust_remote_code, verbose, fmt)
        if fmt == "text":
            several = len(texts) > 1
            columns = (["input"] if several else []) + ["model", "output", "seconds"]
            rows.sort(key=lambda r: r["index"])  # input by input, models in the order given
            print_table(columns, [([r["input"]] if several else []) + [r["model"], r["shown"], f"{r['seconds']:.2f}"] for r in rows])
        return 0

    _execute(body)


def _compare_params(task: str, given: dict[str, Any]) -> dict[str, Any]:
    from tfx.errors import UsageError

    for key in given:
        if key not in COMPARE_OPTIONS[task]:
            flag = OPTION_FLAGS.get(key, "--" + key.replace("_", "-"))
            users = [t for t, keys in COMPARE_OPTIONS.items() if key in keys]
            raise UsageError(f"{flag} does not apply to {task}.", f"It is an option of {' and '.join(users)}.")
    if task == "translate":
        if not given.get("tgt"):
            raise UsageError("translate needs a target language.", "Add --to, e.g. --to fr.")
        given = {**given, "src": (given.get("src") or "en").lower(), "tgt": given["tgt"].lower()}
    return given


def run_comparison(task, texts, names, params, device, dtype, trust_remote_code, verbose, fmt) -> list[dict[str, Any]]:
    """Each model in turn: resolve (all first, so a bad name fails before any model loads), load, run every
    input, free it. jsonl rows are written as each model finishes."""
    import gc

    from tfx import devices, hub, loading, registry
    from tfx.errors import RecordError, TfxError, UsageError
    from tfx.tasks import make_task, text_renderer
    from tfx.tasks.base import validate_generation

    if not names:
        example = " ".join(f"-m {m}" for m in registry.SUGGESTED[task])
        raise UsageError("compare needs the models to compare.", f"Name them with -m, e.g. {example}.")
    if any(not t.strip() for t in texts):
        raise UsageError("the input text is empty.", "Pass some text.")
    generative = task in ("generate", "translate", "summarize")
    if generative:
        validate_generation(params)
    resolved = [hub.resolve(n) for n in names]
    for r in resolved:
        loading.check_task(r, task, loading.read_json(r.path / "config.json"))
    device_name = devices.pick_device(device)
    torch_dtype = devices.pick_dtype(dtype, device_name)
    shown_text = text_renderer(task, params)
    rows = []
    for r in resolved:
        if sys.stderr.isatty():
            _say(f"loading {r.name}")
        started = time.monotonic()
        loaded = loading.load(r, task, device_name, torch_dtype, trust_remote_code, verbose)
        load_seconds = time.monotonic() - started
        if generative:
            validate_generation(params, loaded.generation_defaults)
        runner = make_task(task, loaded, dict(params))
        for index, text in enumerate(texts):
            try:
                runner.check(text)
            except RecordError as exc:
                raise TfxError(f"{r.name}: {exc}.", "Fix the input.") from None
            started = time.monotonic()
            result = runner.run([text])[0]
            row = {"input": text, "model": r.name, **result, "seconds": round(time.monotonic() - started, 4), "load_seconds": round(load_seconds, 4)}
            if fmt == "jsonl":
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            rows.append({**row, "shown": shown_text(result), "index": index})
        del runner, loaded
        gc.collect()  # one model in memory at a time
        if device_name.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
    return rows


# ---- tfx env ---------------------------------------------------------------------------------------------

DEVICE_PROBE = r"""
import json, torch
cuda = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        cuda.append({"device": f"cuda:{i}", "name": p.name, "memory_bytes": p.total_memory})
mps = getattr(torch.backends, "mps", None)
print(json.dumps({"cuda": cuda, "mps": bool(mps and mps.is_available())}))
"""


def env(
    fmt: ListFormat = "text",
    probe_devices: Annotated[bool, typer.Option("--devices/--no-devices", help="Probe CUDA and MPS devices (in a child process that imports torch, ~2 s).")] = True,
) -> None:
    """Versions, devices, the cache and its size, offline state and whether a Hub token is set (never its value)."""

    def body() -> int:
        _setup()
        _check_format(fmt, ("text", "json"))
        info = env_info(probe_devices)
        if fmt == "json":
            print_json(info)
            return 0
        from tfx import hub

        lines = [(name, version or "not installed") for name, version in info["versions"].items()]
        lines.append(("python", f"{info['python']} ({info['platform']})"))
        lines.append(("devices", _devices_text(info["devices"])))
        cache = info["cache"]
        lines.append(("cache", f"{cache['dir']} ({cache['models']} models, {hub.format_size(cache['size_on_disk'])})"))
        lines.append(("offline", "yes (HF_HUB_OFFLINE)" if info["offline"] else "no"))
        lines.append(("hub endpoint", info["endpoint"]))
        token = info["token"]
        lines.append(("hub token", f"configured ({token['source']})" if token["configured"] else "not configured (`hf auth login` or HF_TOKEN)"))
        width = max(len(k) for k, _ in lines)
        sys.stdout.write("".join(f"{k.ljust(width)}  {v}\n" for k, v in lines))
        return 0

    _execute(body)


def env_info(probe_devices: bool = True) -> dict[str, Any]:
    import platform
    from importlib import metadata

    from huggingface_hub import constants

    from tfx import hub

    versions = {}
    for dist in ("tfx", "torch", "transformers", "tokenizers", "huggingface_hub"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    scan = hub.scan_cache()
    source = hub.token_source()
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "devices": _probe_devices() if probe_devices else None,
        "cache": {"dir": str(hub.cache_dir()), "models": len(hub.cached_models(scan)), "size_on_disk": scan.size_on_disk if scan else 0},
        "offline": hub.is_offline(),
        "endpoint": constants.ENDPOINT,
        "token": {"configured": source is not None, "source": source},
    }


def _probe_devices() -> dict[str, Any]:
    """torch answers in a child process: this one stays light, and a hung driver costs a time-out, not a hang."""
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-c", DEVICE_PROBE], capture_output=True, text=True, timeout=DEVICE_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"the device probe took over {DEVICE_PROBE_TIMEOUT_S} s"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"the device probe exited with {done.returncode}"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "the device probe printed no answer"}


def _devices_text(devices: dict[str, Any] | None) -> str:
    if devices is None:
        return "not probed (--no-devices)"
    if "error" in devices:
        return f"unknown: {devices['error']}"
    from tfx import hub

    parts = ["cpu"] + [f"{d['device']} {d['name']} ({hub.format_size(d['memory_bytes'])})" for d in devices["cuda"]]
    parts.append("mps: " + ("available" if devices["mps"] else "no"))
    return "; ".join(parts)
