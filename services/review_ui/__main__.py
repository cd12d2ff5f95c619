"""`python -m services.review_ui serve --host 127.0.0.1 --port 8501`: run the Streamlit app."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

cli = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)

APP = Path(__file__).with_name("streamlit_app.py")


@cli.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default REGRASP_BIND_HOST)."),
    port: int = typer.Option(8501, help="Port to listen on."),
) -> None:
    """Run the review UI (Streamlit, headless, no usage statistics)."""
    from regrasp.platform.settings import load_settings

    settings = load_settings()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host or settings.bind_host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        # Tracebacks only on a developer's machine; a user gets Streamlit's one-line notice.
        "--client.showErrorDetails",
        "full" if settings.mode == "development" else "none",
        # No "Deploy" button or developer menu entries: this app is already deployed.
        "--client.toolbarMode",
        "viewer",
        # One colour legend on every page: red is the model's predictions, green labels,
        # orange marked wrong; so primary buttons and chips are a neutral blue, not red.
        # The same colour as the app's .streamlit/config.toml (a static test holds them equal).
        "--theme.primaryColor",
        "#3b6ea8",
    ]
    # Become Streamlit (exec, not a child): a supervisor's SIGTERM then reaches the server
    # itself, and no orphan is left behind when this process is stopped.
    sys.stdout.flush()
    os.execv(sys.executable, cmd)


@cli.command()
def version() -> None:
    """Print the Streamlit version the UI runs on."""
    import streamlit

    typer.echo(streamlit.__version__)


if __name__ == "__main__":
    cli()
