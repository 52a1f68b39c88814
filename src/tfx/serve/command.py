"""The `tfx serve` command; the server itself is imported only when it starts."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `tfx serve` to the tfx app."""
