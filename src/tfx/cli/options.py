"""Every option shared by several commands, declared once as an Annotated alias, and `task_command`, which
adds the shared ones to each task command."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional, get_type_hints

import typer

TEXT_HELP = "Input texts, one record each. With none (or -), records are read from stdin, one per line."

Texts = Annotated[Optional[list[str]], typer.Argument(help=TEXT_HELP, show_default=False)]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Model alias, Hub id or local directory.", show_default=False)]
Revision = Annotated[Optional[str], typer.Option("--revision", help="Hub branch, tag or commit.", show_default=False)]
Device = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda, cuda:N or mps. auto picks CUDA, then MPS, then CPU.")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto, float32, float16 or bfloat16. auto: float32 on CPU, half precision on GPUs.")]
Format = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="text: one line per record (newlines inside an output are written as \\n, several sequences "
        "are tab-separated); jsonl: one JSON object per record with the exact text and details; "
        "tsv: input<TAB>output.",
    ),
]
InputFile = Annotated[Optional[str], typer.Option("--input", "-i", help="Read records from this file (one per line).", show_default=False)]
InputFormat = Annotated[str, typer.Option("--input-format", help='text, or jsonl: each line a JSON object whose "text" is the input; other fields are passed through.')]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Records per batch (default: chosen per task and device).", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or warnings on stderr.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show the libraries' own logs and progress on stderr.")]
KeepGoing = Annotated[bool, typer.Option("--keep-going", help="Write an error record for a bad record and go on; exit 1 at the end.")]
NoTruncate = Annotated[bool, typer.Option("--no-truncate", help="Treat an input longer than the model's context as a bad record instead of cutting it.")]
Offline = Annotated[bool, typer.Option("--offline", help="Make no network request: use only the local cache (like HF_HUB_OFFLINE=1).")]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="Allow a model to run Python code from its repository.")]
MaxNewTokens = Annotated[Optional[int], typer.Option("--max-new-tokens", help="Most tokens to generate.", show_default=False)]
MaxLength = Annotated[Optional[int], typer.Option("--max-length", help="Most tokens in all, prompt included (the seed's max_length).", show_default=False)]
MinNewTokens = Annotated[Optional[int], typer.Option("--min-new-tokens", help="Fewest tokens to generate.", show_default=False)]
NumBeams = Annotated[Optional[int], typer.Option("--num-beams", help="Beam search width (1: greedy or sampling).", show_default=False)]
Server = Annotated[Optional[str], typer.Option("--server", envvar="TFX_SERVER", help="Send the work to a running `tfx serve` at this URL.", show_default=False)]
Engine = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local: PyTorch in this process; ray: a Ray cluster through Ray Data (pip install 'tfx-cli[ray]'); "
        "ct2: CTranslate2 in this process, int8 on CPU by default, the model converted once (pip install 'tfx-cli[ct2]'); "
        "auto: ct2 where it gives transformers' result, else local.",
    ),
]
ComputeType = Annotated[
    str,
    typer.Option("--compute-type", help="--engine ct2/auto: auto (int8 on CPU), int8, int8_float32, float32, int16; on CUDA also float16, bfloat16, int8_float16."),
]
Output = Annotated[Optional[str], typer.Option("--output", "-o", help="--engine ray: directory for the output shards; embed: the file (or directory) for the vectors.", show_default=False)]
OutputFormat = Annotated[str, typer.Option("--output-format", help="--engine ray: jsonl or parquet shards; embed --output: npy, parquet or jsonl.")]
RayAddress = Annotated[Optional[str], typer.Option("--ray-address", envvar="RAY_ADDRESS", help="--engine ray: cluster address (default: a local Ray on loopback).", show_default=False)]
Replicas = Annotated[Optional[int], typer.Option("--replicas", help="--engine ray: model replicas (default: what the cluster's CPUs/GPUs allow).", show_default=False)]
GpusPerReplica = Annotated[float, typer.Option("--gpus-per-replica", help="--engine ray: GPUs per model replica.")]


# ---- the options every task command shares, added to each by `task_command` ----------------------------

COMMON: tuple[tuple[str, Any, Any], ...] = (
    ("model", Model, None),
    ("no_truncate", NoTruncate, False),
    ("device", Device, "auto"),
    ("dtype", Dtype, "auto"),
    ("fmt", Format, "text"),
    ("input_file", InputFile, None),
    ("input_format", InputFormat, "text"),
    ("batch_size", BatchSize, None),
    ("keep_going", KeepGoing, False),
    ("revision", Revision, None),
    ("offline", Offline, False),
    ("trust_remote_code", TrustRemoteCode, False),
    ("quiet", Quiet, False),
    ("verbose", Verbose, False),
    ("server", Server, None),
    ("engine", Engine, "local"),
    ("compute_type", ComputeType, "auto"),
    ("output", Output, None),
    ("output_format", OutputFormat, "jsonl"),
    ("ray_address", RayAddress, None),
    ("replicas", Replicas, None),
    ("gpus_per_replica", GpusPerReplica, 0.0),
)


def task_command(**defaults: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Declare a task command with only its own parameters plus `common: dict`; the command Typer sees
    has every shared option of COMMON after them (`defaults` changes a shared default, e.g. fmt="jsonl"),
    and the function gets those options' values in `common`. One list of shared options, not nine."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        hints = get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(fn).parameters.values() if p.name != "common"]
        names = {p.name for p in own}
        shared = [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=defaults.get(name, default), annotation=annotation)
            for name, annotation, default in COMMON if name not in names
        ]  # fmt: skip

        def command(**kwargs: Any) -> None:
            common = {name: kwargs.pop(name) for name, _, _ in COMMON if name not in names}
            return fn(**kwargs, common=common)

        command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in own + shared}
        command.__name__, command.__qualname__, command.__doc__, command.__module__ = fn.__name__, fn.__qualname__, fn.__doc__, fn.__module__
        return command

    return decorate
