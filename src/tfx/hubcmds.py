"""Commands about models and the Hub: models, pull, cache, search, compare, env (issue 4)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the tfx app."""
