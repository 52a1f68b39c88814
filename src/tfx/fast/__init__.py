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


def load_fast_generate(path, name: str, family: str, config: dict, generation: dict):
    """tfx's own GPT-2 decoder and tokenizer (no transformers import), or None where they would not give
    transformers' exact result (the reason is logged with -v)."""
    import logging
    import warnings

    log = logging.getLogger("tfx")
    if not enabled() or family != "decoder-only":
        return None
    from tfx.fast import gpt2, text
    from tfx.fast.runner import FastPath

    reason = gpt2.unsupported_reason(path, config, generation) or text.unsupported_reason(path)
    if reason is not None:
        log.info("fast path off for %s: %s", name, reason)
        return None
    warnings.filterwarnings("ignore")
    try:
        tokenizer = text.FastTokenizer(path)
        release_free_memory()  # before the weights arrive, so the two never add up in peak RSS
        return FastPath(gpt2.GPT2Greedy.load(path, config), tokenizer, generation, config)
    except (OSError, ValueError, KeyError) as exc:
        log.info("fast path off for %s: %s", name, exc)
        return None
