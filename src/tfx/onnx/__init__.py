"""The ONNX Runtime backend (`--backend onnx`) for the encoder tasks: classify (and zero-shot), ner, embed,
rank (bi- and cross-encoder) and fill-mask. A model is exported once per task head into a converted copy
beside the hub cache ($HF_HOME/onnx/..., tfx.copies: lock, temporary folder, rename), then run by
onnxruntime with tokenization through `tokenizers` and the post-processing in numpy, so a run whose copy
exists never imports torch or transformers.

Why tfx exports the models itself (torch.onnx.export, the TorchScript exporter) instead of using the
libraries made for it: optimum, optimum-onnx and sentence-transformers' `backend="onnx"` (which calls
optimum) all pin transformers < 5, and tfx runs on transformers 5. The export is a plain trace of the
model's forward pass (for embed and rank: sentence-transformers' own modules, pooling and Dense included),
and each copy is checked against the library that made it before it is kept (export.verify).

    store   the copies' names and conversion (tfx.copies does the locking and renaming)
    export  torch.onnx.export + onnxruntime.quantization.quantize_dynamic (the only module importing torch)
    text    the tokenizer transformers built, saved as tokenizer.json with the facts the tasks read
    runner  the onnxruntime session

Importing this package imports nothing heavy; `require()` imports onnxruntime with a one-line install hint."""

from __future__ import annotations

import os

from tfx.errors import TfxError, UsageError

# task -> the head exported for it (rank's cross-encoder variant: "cross-encoder").
HEADS = {"classify": "classify", "ner": "ner", "embed": "embed", "rank": "embed", "fill-mask": "fill-mask"}
COMPUTE_TYPES = ("auto", "float32", "int8")  # int8: onnxruntime's dynamic quantization of the fp32 copy
INSTALL_HINT = 'Install it with: pip install "tfx-cli[onnx]" (or pip install onnxruntime onnx).'


class Unsupported(TfxError):
    """A model or a setting the onnx backend cannot run with transformers' result (--backend auto falls back)."""

    def __init__(self, message: str, hint: str | None = "Use --backend auto to fall back to transformers, or --backend transformers."):
        super().__init__(message if message.endswith(".") else message + ".", hint)


def require():
    """onnxruntime, or a one-line error naming the install command."""
    try:
        import onnxruntime
    except ImportError:
        raise Unsupported("--backend onnx needs the onnxruntime package, which is not installed.", INSTALL_HINT) from None
    return onnxruntime


def available() -> bool:
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        raise Unsupported("--backend onnx needs the onnxruntime package, which is not installed.", INSTALL_HINT) from None


def head_of(task: str, variant: str | None) -> str:
    if task == "rank" and variant == "cross-encoder":
        return "cross-encoder"
    head = HEADS.get(task)
    if head is None:
        raise Unsupported(f"the onnx backend runs {', '.join(sorted(HEADS))}, not {task}")
    return head


def pick_device(requested: str) -> str:
    requested = (requested or "auto").strip().lower()
    if requested in ("auto", "cpu"):
        return "cpu"
    raise Unsupported(f"the onnx backend runs on the CPU here, not {requested}.", "Use --device cpu, or --backend transformers.")


def pick_compute_type(requested: str) -> str:
    """auto: float32 (exact); int8 only when asked, since it changes the outputs."""
    requested = (requested or "auto").strip().lower()
    if requested not in COMPUTE_TYPES:
        raise UsageError(f"unknown --compute-type '{requested}' for the onnx backend.", f"Use one of: {', '.join(COMPUTE_TYPES)}.")
    return "float32" if requested == "auto" else requested


def threads() -> int:
    """The cores this process was given (its CPU affinity), for onnxruntime's intra-op pool."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)
