"""The root Typer application every command module registers on, and the entry point that
runs it (also used by the services' `python -m services.<name>` commands)."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from regrasp.errors import RegraspError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Regrasp: human-in-the-loop grasp dataset refinement.",
)


def run(cli: typer.Typer) -> None:
    """Run a Typer app as a console entry point.

    Bad input — a `RegraspError`, a pydantic `ValidationError` of an option, an `OSError`
    naming a path — becomes one line on stderr and exit code 1, never a traceback, so every
    command (ours and the services') fails the same way.
    """
    try:
        cli()
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
