"""The ``bench`` command line: Typer commands only (the work is done by the layers below)."""

from bench.cli.commands import app, main

__all__ = ["app", "main"]
