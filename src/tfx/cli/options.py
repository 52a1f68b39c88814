"""Every option shared by several commands, declared once as an Annotated alias, and `task_command`, which
adds the shared ones to each task command."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional, get_type_hints

import typer

from tfx.cli import completion
from tfx.cli.derive import escape, setting_parameters
from tfx.settings import GENERATION_PANEL, TASK_PANEL

TEXT_HELP = "Input texts, one record each. With none (or -), records are read from stdin, one per line."

# The help panels of a task command, in the order its --help shows them (the task's own settings come from
# the settings schema: "Task settings" and "Generation", between the model and the input panels).
MODEL_PANEL = "Model"
IO_PANEL = "Input and output"
ENGINE_PANEL = "Engine, server and Ray"


def _opt(*decls: str, help: str, panel: str, metavar: str | None = None, **kw: Any) -> Any:
    return typer.Option(*decls, help=escape(help), rich_help_panel=panel, metavar=metavar, **kw)


def _flag(*decls: str, help: str, panel: str) -> Any:
    return typer.Option(*decls, help=escape(help), rich_help_panel=panel, metavar="", show_default=False)


Texts = Annotated[Optional[list[str]], typer.Argument(help=TEXT_HELP, show_default=False, metavar="TEXT")]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Model alias, Hub id or local directory.", show_default=False, autocompletion=completion.complete_model, rich_help_panel=MODEL_PANEL, metavar="MODEL")]
Revision = Annotated[Optional[str], _opt("--revision", help="Hub branch, tag or commit.", panel=MODEL_PANEL, metavar="REV", show_default=False)]
Device = Annotated[str, _opt("--device", "-d", help="auto, cpu, cuda, cuda:N or mps. auto picks CUDA, then MPS, then CPU.", panel=MODEL_PANEL, metavar="DEVICE")]
Dtype = Annotated[str, _opt("--dtype", help="auto, float32, float16 or bfloat16. auto: float32 on CPU, half precision on GPUs.", panel=MODEL_PANEL, metavar="DTYPE")]
Offline = Annotated[bool, _flag("--offline", help="Make no network request: use only the local cache (like HF_HUB_OFFLINE=1).", panel=MODEL_PANEL)]
TrustRemoteCode = Annotated[bool, _flag("--trust-remote-code", help="Allow a model to run Python code from its repository.", panel=MODEL_PANEL)]
Backend = Annotated[
    Optional[str],
    _opt(
        "--backend",
        help="What computes: transformers (PyTorch), ct2 (CTranslate2, pip install 'tfx-cli[ct2]'), onnx (ONNX Runtime, "
        "pip install 'tfx-cli[onnx]'), or auto (a faster backend where it gives transformers' result). Default: transformers.",
        panel=MODEL_PANEL, metavar="BACKEND", show_default=False,
    ),
]
ComputeType = Annotated[
    str,
    _opt("--compute-type", help="--backend ct2/onnx/auto: auto (int8 on CPU for --backend ct2; float32, which gives transformers' result, for onnx and for --backend auto), int8, int8_float32, float32, int16; on CUDA also float16, bfloat16, int8_float16.", panel=MODEL_PANEL, metavar="TYPE"),
]
Format = Annotated[
    str,
    _opt(
        "--format", "-f",
        help="text: one line per record (newlines inside an output are written as \\n, several sequences "
        "are tab-separated); jsonl (json is the same): one JSON object per record with the exact text and details; "
        "tsv: input<TAB>output.",
        panel=IO_PANEL, metavar="FORMAT",
    ),
]
InputFile = Annotated[Optional[str], _opt("--input", "-i", help="Read records from this file (one per line; a .jsonl or .ndjson file is read as jsonl, a .tsv file as tsv).", panel=IO_PANEL, metavar="FILE", show_default=False)]
InputFormat = Annotated[Optional[str], _opt("--input-format", help='text; jsonl: each line a JSON object whose "text" is the input, other fields passed through; tsv: the first column is the input (qa: question, then context), further columns passed through. Default: from the --input file\'s extension, else text.', panel=IO_PANEL, metavar="FORMAT", show_default=False)]
BatchSize = Annotated[Optional[int], _opt("--batch-size", "-b", help="Records per batch (default: chosen per task and device).", panel=IO_PANEL, metavar="INT", show_default=False)]
Quiet = Annotated[bool, _flag("--quiet", "-q", help="No progress bar or warnings on stderr.", panel=IO_PANEL)]
Verbose = Annotated[bool, _flag("--verbose", "-v", help="Show the libraries' own logs and progress on stderr.", panel=IO_PANEL)]
KeepGoing = Annotated[bool, _flag("--keep-going", help="Write an error record for a bad record and go on; exit 1 at the end.", panel=IO_PANEL)]
Server = Annotated[Optional[str], _opt("--server", envvar="TFX_SERVER", help="Send the work to a running `tfx serve` at this URL.", panel=ENGINE_PANEL, metavar="URL", show_default=False)]
Engine = Annotated[
    str,
    _opt(
        "--engine",
        help="Where it runs: local (this process) or ray (a Ray cluster through Ray Data, pip install 'tfx-cli[ray]'). "
        "ct2 and auto are the old spellings of --backend ct2 / --backend auto.",
        panel=ENGINE_PANEL, metavar="ENGINE",
    ),
]
Output = Annotated[Optional[str], _opt("--output", "-o", help="--engine ray: directory for the output shards; embed: the file (or directory) for the vectors.", panel=ENGINE_PANEL, metavar="PATH", show_default=False)]
OutputFormat = Annotated[str, _opt("--output-format", help="--engine ray: jsonl or parquet shards; embed --output: npy, parquet or jsonl.", panel=ENGINE_PANEL, metavar="FORMAT")]
RayAddress = Annotated[Optional[str], _opt("--ray-address", envvar="RAY_ADDRESS", help="--engine ray: cluster address (default: a local Ray on loopback).", panel=ENGINE_PANEL, metavar="ADDRESS", show_default=False)]
Replicas = Annotated[Optional[int], _opt("--replicas", help="--engine ray: model replicas (default: what the cluster's CPUs/GPUs allow).", panel=ENGINE_PANEL, metavar="INT", show_default=False)]
GpusPerReplica = Annotated[float, _opt("--gpus-per-replica", help="--engine ray: GPUs per model replica.", panel=ENGINE_PANEL, metavar="NUMBER")]
# Options of the other commands (chat, compare) that share a name with a setting, declared once here.
MaxNewTokens = Annotated[Optional[int], typer.Option("--max-new-tokens", help="Most tokens to generate.", show_default=False, metavar="INT")]


# ---- the options every task command shares, added to each by `task_command` ----------------------------

# Before the task's settings: the model panel; after them: input/output, then engine/server/Ray.
COMMON_BEFORE: tuple[tuple[str, Any, Any], ...] = (
    ("model", Model, None),
    ("revision", Revision, None),
    ("device", Device, "auto"),
    ("dtype", Dtype, "auto"),
    ("backend", Backend, None),
    ("compute_type", ComputeType, "auto"),
    ("offline", Offline, False),
    ("trust_remote_code", TrustRemoteCode, False),
)
COMMON_AFTER: tuple[tuple[str, Any, Any], ...] = (
    ("fmt", Format, "text"),
    ("input_file", InputFile, None),
    ("input_format", InputFormat, None),
    ("batch_size", BatchSize, None),
    ("keep_going", KeepGoing, False),
    ("quiet", Quiet, False),
    ("verbose", Verbose, False),
    ("engine", Engine, "local"),
    ("server", Server, None),
    ("output", Output, None),
    ("output_format", OutputFormat, "jsonl"),
    ("ray_address", RayAddress, None),
    ("replicas", Replicas, None),
    ("gpus_per_replica", GpusPerReplica, 0.0),
)
COMMON = COMMON_BEFORE + COMMON_AFTER


PANEL_ORDER = (MODEL_PANEL, TASK_PANEL, GENERATION_PANEL, IO_PANEL, ENGINE_PANEL)


def _is_argument(annotation: Any) -> bool:
    return any(isinstance(m, typer.models.ArgumentInfo) for m in getattr(annotation, "__metadata__", ()))


def _panel(annotation: Any) -> str | None:
    return next((m.rich_help_panel for m in getattr(annotation, "__metadata__", ()) if hasattr(m, "rich_help_panel")), None)


def task_command(task: str, skip: tuple[str, ...] = (), **defaults: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Declare a task command with only its own parameters plus `values: dict` and `common: dict`. The
    command Typer sees has its own parameters, the model options, every CLI setting of the task's settings
    class (from the settings schema, less `skip`), then the input/output and engine options; the function gets
    the settings' values by field name in `values` and the shared options in `common` (`defaults` changes a
    shared default, e.g. fmt="jsonl"). One declaration of each option, not nine."""
    from tfx.settings import SETTINGS

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        hints = get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(fn).parameters.values() if p.name not in ("common", "values")]
        names = {p.name for p in own}
        settings = [p for p in setting_parameters(SETTINGS[task], skip) if p.name not in names]
        setting_names = {p.name for p in settings}

        def shared(items):
            return [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name, default), annotation=annotation)
                for name, annotation, default in items if name not in names
            ]  # fmt: skip

        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        arguments = [p for p in own if _is_argument(p.annotation)]
        options = [p for p in own if not _is_argument(p.annotation)]
        settings.sort(key=lambda p: PANEL_ORDER.index(_panel(p.annotation)) if _panel(p.annotation) in PANEL_ORDER else len(PANEL_ORDER))
        params = arguments + shared(COMMON_BEFORE) + settings + options + shared(COMMON_AFTER)

        def command(**kwargs: Any) -> None:
            common = {name: kwargs.pop(name) for name, _, _ in COMMON if name not in names}
            values = {name: kwargs.pop(name) for name in setting_names}
            return fn(**kwargs, values=values, common=common)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__qualname__, command.__doc__, command.__module__ = fn.__name__, fn.__qualname__, fn.__doc__, fn.__module__
        return command

    return decorate
