"""The `regrasp` command: a thin Typer shell over the library.

Each subcommand builds settings, calls the library, and turns a `RegraspError` into one
line on stderr with exit code 1. Subcommands that need torch import it inside the command.
"""

from __future__ import annotations

import sys

import typer

from regrasp.errors import RegraspError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Regrasp: human-in-the-loop grasp dataset refinement.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema management.")
app.add_typer(db_app, name="db")


@app.command()
def settings() -> None:
    """Print the effective settings (secrets masked)."""
    from regrasp.settings import load_settings

    s = load_settings()
    for name, value in s.model_dump().items():
        typer.echo(f"{name} = {value}")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from regrasp.settings import load_settings
    from regrasp.store.db import migrations

    s = load_settings()
    migrations.upgrade(s.database_url, revision)
    typer.echo(f"database at {migrations.current(s.database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Revert migrations down to REVISION."""
    from regrasp.settings import load_settings
    from regrasp.store.db import migrations

    s = load_settings()
    migrations.downgrade(s.database_url, revision)
    typer.echo(f"database at {migrations.current(s.database_url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's current revision."""
    from regrasp.settings import load_settings
    from regrasp.store.db import migrations

    typer.echo(migrations.current(load_settings().database_url) or "empty")


def main() -> None:
    """Console entry point: domain errors become one line and exit code 1."""
    try:
        app()
    except RegraspError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
