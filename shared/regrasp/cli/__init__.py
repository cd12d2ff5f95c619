"""The `regrasp` command: a thin Typer shell over the library.

Each subcommand builds settings, calls the library (or the orchestrator's API through its
typed client), and turns a `RegraspError` into one line on stderr with exit code 1; so does
`main` for the two other ways bad input fails here: a value the request schemas refuse
(pydantic's ValidationError, e.g. `regrasp import ../x`) and a file that cannot be read or
written (OSError, e.g. `-o` into a missing folder).
Commands live in one module per group; importing them registers them on `app`.
Subcommands that need torch import it inside the command.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from regrasp.cli import campaigns, datasets, db, rounds, stack, training  # noqa: F401
from regrasp.cli._app import app
from regrasp.errors import RegraspError

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: bad input becomes one line on stderr and exit code 1."""
    try:
        app()
    except RegraspError as exc:
        _fail(str(exc))
    except ValidationError as exc:
        _fail(f"invalid {exc.title}: {validation_summary(exc)}")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")


def validation_summary(exc: ValidationError) -> str:
    """`field: message; ...` for each problem, on one line."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "value"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _fail(message: str) -> None:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(1)
