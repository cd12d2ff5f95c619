"""`regrasp api-key create|list|revoke`: API keys through the orchestrator (admins).

A key is printed once, when it is made; only its prefix is stored in clear. The default
scope is `robot` (only the inference service's /predict and /model).
"""

from __future__ import annotations

import typer

from regrasp.cli._app import app
from regrasp.cli._common import (
    PASSWORD_OPTION,
    TOKEN_OPTION,
    URL_OPTION,
    USER_OPTION,
    orchestrator_client,
)

key_app = typer.Typer(no_args_is_help=True, help="API keys for robots and services (admins).")
app.add_typer(key_app, name="api-key")


@key_app.command("create")
def key_create(
    name: str = typer.Argument(..., help="What the key is for, e.g. 'ur5-cell-1'."),
    scope: str = typer.Option(
        "robot", help="robot (only /predict and /model), service, or admin (acts as its owner)."
    ),
    owner: int = typer.Option(None, help="User id the key belongs to (default: you)."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Create a key and print it: the only time it is ever shown."""
    from regrasp.api.accounts import ApiKeyCreate
    from regrasp.platform.accounts import parse_scope

    scope = parse_scope(scope).value  # one line naming the known scopes, before any call
    with orchestrator_client(url, token, username, password) as api:
        made = api.create_api_key(ApiKeyCreate(name=name, scope=scope, owner_id=owner))
    typer.echo(f"api key {made.id} {made.name!r} ({made.scope}): {made.key}")
    typer.echo("store it now: it is not shown again", err=True)


@key_app.command("list")
def key_list(
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Every key, one line each (never the secret)."""
    with orchestrator_client(url, token, username, password) as api:
        for k in api.list_api_keys():
            used = f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never"
            state = "revoked" if k.revoked else "active"
            typer.echo(
                f"{k.id}\t{k.name}\t{k.scope}\trgk_{k.prefix}_…\towner {k.owner_id}\t"
                f"{state}\tlast used {used}"
            )


@key_app.command("revoke")
def key_revoke(
    key_id: int = typer.Argument(..., help="Key id (see `regrasp api-key list`)."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Revoke a key: it stops working at once (within the services' 10 s auth cache)."""
    with orchestrator_client(url, token, username, password) as api:
        api.revoke_api_key(key_id)
    typer.echo(f"api key {key_id} revoked")
