"""Options and the orchestrator client shared by the commands that call the API."""

from __future__ import annotations

import typer

from regrasp.clients.orchestrator import OrchestratorClient

URL_OPTION = typer.Option(
    None, "--url", help="Orchestrator URL (default REGRASP_ORCHESTRATOR_URL)."
)
TOKEN_OPTION = typer.Option(
    None, "--token", help="Bearer token or API key (default REGRASP_ORCHESTRATOR_TOKEN)."
)
USER_OPTION = typer.Option(
    None, "--username", "-u", help="Log in with this user instead of a token."
)
PASSWORD_OPTION = typer.Option(
    None, "--password", help="Password for --username (prompted if absent)."
)


def orchestrator_client(
    url: str | None, token: str | None, username: str | None, password: str | None
) -> OrchestratorClient:
    """A client of the orchestrator, signed in with a token/API key or a password."""
    from regrasp.settings import load_settings

    s = load_settings()
    client = OrchestratorClient(url or s.orchestrator_url, timeout=600.0)
    if username:
        client.login(username, password or typer.prompt("password", hide_input=True))
    else:
        configured = s.orchestrator_token.get_secret_value() if s.orchestrator_token else None
        client.use_credential(token or configured)
    return client
