"""The command line: Typer commands that build a RunSpec (or call the hub and cache layer) and hand it on."""

from tfx.cli.app import app, main

__all__ = ["app", "main"]
