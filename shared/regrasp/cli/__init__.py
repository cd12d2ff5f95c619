"""The `regrasp` command: a thin Typer shell over the library.

Each subcommand builds settings, calls the library (or the orchestrator's API through its
typed client), and turns bad input into one line on stderr with exit code 1
(`regrasp.cli._app.run`). Commands live in one module per group; importing them registers
them on `app`. Subcommands that need torch import it inside the command.
"""

from __future__ import annotations

from regrasp.cli import (  # noqa: F401
    api_keys,
    campaigns,
    datasets,
    db,
    gc,
    models,
    rounds,
    stack,
    store,
    training,
    users,
)
from regrasp.cli._app import app, run

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: bad input becomes one line on stderr and exit code 1."""
    run(app)
