"""The root Typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Regrasp: human-in-the-loop grasp dataset refinement.",
)


def run(cli: typer.Typer) -> None:
    """Run a Typer app as a console entry point: a `RegraspError` becomes one line on
    stderr and exit code 1, so every command (ours and the services') fails the same way."""
    import sys

    from regrasp.errors import RegraspError

    try:
        cli()
    except RegraspError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
