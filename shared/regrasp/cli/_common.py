"""Options and the orchestrator client shared by the commands that call the API, and the
parsers of option values that typer cannot type (JSON objects, comma-separated lists)."""

from __future__ import annotations

import json
from typing import Any

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
    from regrasp.platform.settings import load_settings

    s = load_settings()
    client = OrchestratorClient(url or s.orchestrator_url, timeout=600.0)
    if username:
        client.login(username, password or typer.prompt("password", hide_input=True))
    else:
        configured = s.orchestrator_token.get_secret_value() if s.orchestrator_token else None
        client.use_credential(token or configured)
    return client


def json_object_option(text: str | None, flag: str) -> dict[str, Any]:
    """The JSON object an option carries (empty when absent); InvalidInput naming the flag."""
    from regrasp.platform.errors import InvalidInput

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{flag} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value


def int_list_option(text: str, flag: str) -> list[int]:
    """The integers of a comma-separated option, e.g. "0,2,6"; InvalidInput naming the flag."""
    from regrasp.platform.errors import InvalidInput

    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise InvalidInput(f"{flag} must be comma-separated integers, got {text!r}") from None
