"""Sending task commands to a running `tfx serve` (--server URL / TFX_SERVER)."""

from __future__ import annotations

from tfx.errors import TfxError


def run_remote(opts) -> int:
    raise TfxError("--server is not supported yet.", "Drop --server to run the model locally.")
