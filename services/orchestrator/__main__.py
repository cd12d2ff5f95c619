"""`python -m services.orchestrator serve | create-admin`: run the API, or make an admin."""

from __future__ import annotations

import typer

from regrasp.cli._app import run

cli = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)


@cli.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default REGRASP_BIND_HOST)."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Run the orchestrator API with uvicorn (REGRASP_ORCHESTRATOR_WORKERS processes)."""
    import uvicorn

    from regrasp.platform.settings import load_settings
    from services.orchestrator.app import access_log_on, create_app

    settings = load_settings()
    options = {
        "host": host or settings.bind_host,
        "port": port,
        "access_log": access_log_on(settings),
    }
    if settings.orchestrator_workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:
        # Each worker process builds its own app from the same environment.
        uvicorn.run(
            "services.orchestrator.app:app_from_environment",
            factory=True,
            workers=settings.orchestrator_workers,
            **options,
        )


@cli.command("create-admin")
def create_admin(
    username: str = typer.Option(..., help="Name of the new admin."),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
    ),
) -> None:
    """Create an admin directly in the database (bootstrap: no API call needed)."""
    from regrasp.platform.accounts import create_user
    from regrasp.platform.settings import load_settings
    from regrasp.platform.store.db.engine import make_engine, session_scope
    from services.orchestrator.app import prepare_database

    settings = load_settings()
    prepare_database(settings, ensure=False)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            user = create_user(session, username=username, password=password, role="admin")
            typer.echo(f"created admin {user.username!r} (id {user.id})")
    finally:
        engine.dispose()


def main() -> None:
    run(cli)


if __name__ == "__main__":
    main()
