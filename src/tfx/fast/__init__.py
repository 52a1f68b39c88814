"""Fast paths that replace transformers' general machinery where tfx knows the exact computation.

`gpt2` runs GPT-2-family greedy decoding with its own forward pass (static KV cache, weights laid
out for the shapes a decode step multiplies) and `text` wraps the model's `tokenizer.json` with the
`tokenizers` library, so `tfx generate` on a GPT-2 model never imports transformers. Each fast path
is taken only when its result is the one transformers would give; everything else falls back.
`TFX_FAST=0` turns them all off (the plain transformers path, for comparison and debugging)."""

from __future__ import annotations

import os


def enabled() -> bool:
    return os.environ.get("TFX_FAST", "1") not in ("0", "false", "no", "off")


def release_free_memory() -> None:
    """Hand glibc's freed heap pages back to the OS (malloc_trim). Parsing tokenizer.json leaves ~30 MB of
    freed-but-kept heap behind, which would otherwise sit under the weights and count in peak RSS."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do
