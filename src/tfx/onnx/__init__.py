"""The ONNX Runtime backend (`--backend onnx`) for the encoder tasks: classify (and zero-shot), ner, qa,
embed, rank (bi- and cross-encoder) and fill-mask. A model is exported once per task head into a converted copy
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

from tfx import copies
from tfx.errors import UsageError

# task -> the head exported for it (rank's cross-encoder variant: "cross-encoder").
HEADS = {"classify": "classify", "ner": "ner", "qa": "qa", "embed": "embed", "rank": "embed", "fill-mask": "fill-mask"}
COMPUTE_TYPES = ("auto", "float32", "int8")  # int8: onnxruntime's dynamic quantization of the fp32 copy
INSTALL_HINT = 'Install it with: pip install "tfx-cli[onnx]" (or pip install onnxruntime onnx).'


class Unsupported(copies.Unsupported):
    """A model or a setting the onnx backend cannot run with transformers' result (--backend auto falls back)."""


def require():
    """onnxruntime, or a one-line error naming the install command."""
    return copies.require("onnxruntime", "onnx", INSTALL_HINT, Unsupported)


def available() -> bool:
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None


def version() -> str:
    return copies.installed_version("onnxruntime", "onnx", INSTALL_HINT, Unsupported)


def head_of(task: str, variant: str | None) -> str:
    if task == "rank" and variant == "cross-encoder":
        return "cross-encoder"
    head = HEADS.get(task)
    if head is None:
        raise Unsupported(f"the onnx backend runs {', '.join(sorted(HEADS))}, not {task}")
    return head


def pick_device(requested: str) -> str:
    return copies.request_device(requested, "onnx", Unsupported)[0]  # the CPU execution provider only


def pick_compute_type(requested: str) -> str:
    """auto: float32 (exact); int8 only when asked, since it changes the outputs."""
    requested = (requested or "auto").strip().lower()
    if requested not in COMPUTE_TYPES:
        raise UsageError(f"unknown --compute-type '{requested}' for the onnx backend.", f"Use one of: {', '.join(COMPUTE_TYPES)}.")
    return "float32" if requested == "auto" else requested


def threads() -> int:
    """The cores this process was given (its CPU affinity), for onnxruntime's intra-op pool."""
    return copies.threads()
