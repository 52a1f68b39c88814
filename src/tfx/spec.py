"""RunSpec: one run, typed and immutable, built once from argv (or a request body) and validated once,
before any model is touched. The task settings it holds live in tfx.settings (re-exported here).
Picklable: Ray ships it to its replicas. Imports nothing heavy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tfx import registry, userconfig
from tfx.errors import UsageError
from tfx.settings import *  # noqa: F403 - the task settings, re-exported: `from tfx.spec import GenerateSettings`
from tfx.settings import SETTINGS, Settings

FORMATS = ("text", "jsonl", "tsv")
INPUT_FORMATS = ("text", "jsonl", "tsv")
OUTPUT_FORMATS = ("jsonl", "parquet")
ENGINES = ("local", "ray")  # --engine; --server picks "remote"
BACKENDS = ("transformers", "ct2", "onnx", "auto")  # RunSpec.backend (--backend; the old --engine ct2|auto)


@dataclass(frozen=True)
class Inputs:
    texts: tuple[str, ...] = ()  # command-line texts; none (or "-"): stdin
    path: str | None = None  # --input
    format: str = "text"  # text | jsonl


@dataclass(frozen=True)
class Output:
    format: str = "text"  # text | jsonl | tsv
    stream: bool | None = None  # generate: tokens as they come (None: for one prompt on a terminal)
    path: str | None = None  # --engine ray: the output directory
    shard_format: str = "jsonl"  # --engine ray: jsonl | parquet


@dataclass(frozen=True)
class Engine:
    name: str = "local"  # local | remote | ray
    server: str | None = None  # remote: the tfx serve URL
    ray_address: str | None = None
    replicas: int | None = None
    gpus_per_replica: float = 0.0


@dataclass(frozen=True)
class RunSpec:
    task: str
    settings: Settings
    model: str  # what the user named, or the task's default
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    inputs: Inputs = field(default_factory=Inputs)
    output: Output = field(default_factory=Output)
    engine: Engine = field(default_factory=Engine)
    batch_size: int | None = None
    keep_going: bool = False
    quiet: bool = False
    verbose: bool = False
    # What computes, apart from where (engine): transformers (PyTorch), ct2 (CTranslate2, tfx.ct2), onnx
    # (ONNX Runtime, tfx.onnx: the encoder tasks) or auto (ct2 / onnx at float32 where they run the task,
    # else transformers). Every engine runs every backend.
    backend: str = "transformers"
    compute_type: str = "auto"  # ct2: auto | int8 | int8_float32 | float32 | int16 | float16 | ...; onnx: auto (float32) | float32 | int8

    @property
    def generative(self) -> bool:
        return registry.task_info(self.task).generative

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)


def build(task: str, settings: Settings, model: str | None = None, **rest: Any) -> RunSpec:
    """The one place a run is checked before any model is touched; returns the immutable spec."""
    info = registry.task_info(task)
    if not isinstance(settings, SETTINGS[info.name]):
        raise TypeError(f"{info.name} takes {SETTINGS[info.name].__name__}, not {type(settings).__name__}")
    settings.validate()
    # The user's alias, else the name; no name: the config's model for the task (not for a variant such as
    # classify --labels, which needs another kind of model), else the registry's (tfx.userconfig).
    configured = None if model or settings.variant() else userconfig.default_for(info.name)
    model = userconfig.resolve(model) if model else configured or settings.default_model(info.name)
    spec = RunSpec(task=info.name, settings=settings, model=model, **rest)
    check(spec)
    return spec


def check(spec: RunSpec) -> None:
    if spec.output.format not in FORMATS:
        raise UsageError(f"unknown --format '{spec.output.format}'.", f"Use one of: {', '.join(FORMATS)}.")
    if spec.inputs.format not in INPUT_FORMATS:
        raise UsageError(f"unknown --input-format '{spec.inputs.format}'.", "Use text or jsonl.")
    if spec.engine.name not in (*ENGINES, "remote"):
        raise UsageError(f"unknown --engine '{spec.engine.name}'.", f"Use one of: {', '.join(ENGINES)}.")
    if spec.backend not in BACKENDS:
        raise UsageError(f"unknown backend '{spec.backend}'.", f"Use one of: {', '.join(BACKENDS)}.")
    if spec.batch_size is not None and spec.batch_size < 1:
        raise UsageError("--batch-size must be at least 1.", "Leave it out for an automatic choice.")
    if spec.inputs.path is not None and spec.inputs.texts:
        raise UsageError("give the input either as arguments or with --input, not both.", "Drop one of them.")
    if any(not t.strip() for t in spec.inputs.texts if t != "-"):
        raise UsageError("the input text is empty.", 'Pass some text, e.g. tfx generate "Once upon a time".')
    if spec.engine.name != "ray":
        check_local_output(spec)


VECTOR_FORMATS = ("jsonl", "npy", "parquet")  # embed --output-format without Ray: one file of vectors


def check_local_output(spec: RunSpec) -> None:
    """--output and --output-format name Ray's shard directory; without Ray only embed writes a file."""
    out = spec.output
    if spec.task != "embed" and (out.path is not None or out.shard_format != "jsonl"):
        raise UsageError("--output and --output-format are for --engine ray (and tfx embed's vector files).", "Drop them and redirect stdout, e.g. > out.jsonl.")
    if out.shard_format not in VECTOR_FORMATS:
        raise UsageError(f"unknown --output-format '{out.shard_format}' for embed.", f"Use one of: {', '.join(VECTOR_FORMATS)}.")
    if out.path is None and out.shard_format != "jsonl":
        raise UsageError(f"--output-format {out.shard_format} writes a file.", f"Add --output FILE (or DIR for DIR/embeddings.{out.shard_format}).")
