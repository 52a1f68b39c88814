"""--engine ray: the same task code on a Ray cluster through Ray Data (issue 7)."""

from __future__ import annotations

from tfx.errors import TfxError


def run_ray(opts) -> int:
    raise TfxError("--engine ray is not available yet.", "Use the default local engine.")
