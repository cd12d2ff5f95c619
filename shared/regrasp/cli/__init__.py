"""The `regrasp` command: a thin Typer shell over the library.

Each subcommand builds settings, calls the library (or the orchestrator's API through its
typed client), and turns a `RegraspError` into one line on stderr with exit code 1.
Commands live in one module per group; importing them registers them on `app`.
Subcommands that need torch import it inside the command.
"""

from __future__ import annotations

import sys

import typer

from regrasp.cli import campaigns, datasets, db, rounds, stack, store, training  # noqa: F401
from regrasp.cli._app import app
from regrasp.errors import RegraspError

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: domain errors become one line and exit code 1."""
    try:
        app()
    except RegraspError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
