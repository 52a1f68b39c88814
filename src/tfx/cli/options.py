"""Every option shared by several commands, declared once as an Annotated alias."""

from __future__ import annotations

from typing import Annotated, Optional

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
        help="local: PyTorch in this process; ray: a Ray cluster through Ray Data (pip install 'tfx-cli[ray]').",
    ),
]
Output = Annotated[Optional[str], typer.Option("--output", "-o", help="--engine ray: directory for the output shards.", show_default=False)]
OutputFormat = Annotated[str, typer.Option("--output-format", help="--engine ray: jsonl or parquet shards.")]
RayAddress = Annotated[Optional[str], typer.Option("--ray-address", envvar="RAY_ADDRESS", help="--engine ray: cluster address (default: a local Ray on loopback).", show_default=False)]
Replicas = Annotated[Optional[int], typer.Option("--replicas", help="--engine ray: model replicas (default: what the cluster's CPUs/GPUs allow).", show_default=False)]
GpusPerReplica = Annotated[float, typer.Option("--gpus-per-replica", help="--engine ray: GPUs per model replica.")]
