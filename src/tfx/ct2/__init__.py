"""The CTranslate2 backend (`--backend ct2`): a model converted once from its cached snapshot, then run by
CTranslate2 with tokenization through `tokenizers` / sentencepiece, so a run whose conversion exists never
imports torch or transformers.

    store    the converted copies beside the hub cache ($HF_HOME/ctranslate2/...), lock + temp + rename
    convert  TransformersConverter with the transformers-5 shims (the only module importing transformers)
    text     tokenizers straight from tokenizer.json or the sentencepiece models
    options  the explicit mapping from a generation config to CTranslate2's options (pure Python)
    runner   the Generator / Translator wrappers

Importing this package imports nothing heavy; `require()` imports ctranslate2 with a one-line install hint."""

from __future__ import annotations

from tfx import copies
from tfx.errors import UsageError

# model_type -> tasks the ct2 backend runs it for (measured token-identical on tfx's tiny models).
MODEL_TYPES = {
    "gpt2": ("generate",),
    "t5": ("translate", "summarize"),
    "bart": ("summarize",),
    "marian": ("translate",),
}
CPU_COMPUTE_TYPES = ("int8", "int8_float32", "float32", "int16")
CUDA_COMPUTE_TYPES = ("int8", "int8_float32", "float32", "int16", "float16", "bfloat16", "int8_float16", "int8_bfloat16")
COMPUTE_TYPES = ("auto", *CUDA_COMPUTE_TYPES)
INSTALL_HINT = 'Install it with: pip install "tfx-cli[ct2]" (or pip install "ctranslate2>=4.8,<5").'


class Unsupported(copies.Unsupported):
    """A model or a setting the ct2 backend cannot run with transformers' result (--backend auto falls back)."""


def require():
    """ctranslate2, or a one-line error naming the install command."""
    return copies.require("ctranslate2", "ct2", INSTALL_HINT, Unsupported)


def version() -> str:
    return copies.installed_version("ctranslate2", "ct2", INSTALL_HINT, Unsupported)


def unsupported_model(model_type: str, task: str) -> str | None:
    tasks = MODEL_TYPES.get(model_type)
    if tasks is None:
        known = ", ".join(sorted(MODEL_TYPES))
        return f"the ct2 backend does not run {model_type or 'this'} models (it runs: {known})"
    if task not in tasks:
        return f"the ct2 backend runs {model_type} models for {', '.join(tasks)}, not {task}"
    return None


def pick_device(requested: str) -> tuple[str, int]:
    """(cpu | cuda, index) from --device, without torch: auto is CUDA when CTranslate2 sees a GPU."""
    return copies.request_device(requested, "ct2", Unsupported, lambda: require().get_cuda_device_count())


def pick_compute_type(requested: str, device: str) -> str:
    """auto: int8 on CPU, int8_float16 on CUDA. The rest as asked, where the device supports it."""
    requested = (requested or "auto").strip().lower()
    if requested not in COMPUTE_TYPES:
        raise UsageError(f"unknown --compute-type '{requested}'.", f"Use one of: {', '.join(COMPUTE_TYPES)}.")
    if requested == "auto":
        return "int8" if device == "cpu" else "int8_float16"
    allowed = CPU_COMPUTE_TYPES if device == "cpu" else CUDA_COMPUTE_TYPES
    if requested not in allowed:
        raise UsageError(f"--compute-type {requested} needs a CUDA device.", f"On CPU use one of: {', '.join(CPU_COMPUTE_TYPES)}.")
    return requested


def threads() -> int:
    """The cores this process was given (its CPU affinity), for intra_threads; inter_threads stays 1.
    Nothing here sets CT2_USE_MKL: CTranslate2 picks its own GEMM backend (forcing MKL on AMD CPUs is slow)."""
    return copies.threads()
