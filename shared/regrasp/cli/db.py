"""`regrasp settings` and `regrasp db upgrade|downgrade|current`."""

from __future__ import annotations

import typer

from regrasp.cli._app import app

db_app = typer.Typer(no_args_is_help=True, help="Database schema management.")
app.add_typer(db_app, name="db")


@app.command()
def settings() -> None:
    """Print the effective settings (secrets masked, the database password too)."""
    from regrasp.platform.settings import load_settings

    s = load_settings()
    for name, value in s.redacted().items():
        typer.echo(f"{name} = {value}")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from regrasp.platform.settings import load_settings
    from regrasp.platform.store.db import migrations

    s = load_settings()
    migrations.upgrade(s.database_url, revision)
    typer.echo(f"database at {migrations.current(s.database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Revert migrations down to REVISION."""
    from regrasp.platform.settings import load_settings
    from regrasp.platform.store.db import migrations

    s = load_settings()
    migrations.downgrade(s.database_url, revision)
    typer.echo(f"database at {migrations.current(s.database_url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's current revision."""
    from regrasp.platform.settings import load_settings
    from regrasp.platform.store.db import migrations

    typer.echo(migrations.current(load_settings().database_url) or "empty")
