"""`regrasp user add|list|passwd`: people who review and lead, through the orchestrator."""

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

user_app = typer.Typer(no_args_is_help=True, help="Annotators and admins (admins only).")
app.add_typer(user_app, name="user")

NEW_PASSWORD_OPTION = typer.Option(
    None,
    "--new-password",
    help="The user's password (default: a generated one, printed once).",
)


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="Username: letters, digits, '._-@'."),
    role: str = typer.Option("annotator", help="annotator or admin."),
    new_password: str = NEW_PASSWORD_OPTION,
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Add an annotator (or an admin with --role admin); prints a generated password once."""
    from regrasp.api.accounts import UserCreate

    chosen = new_password or _generated()
    body = UserCreate(username=name, password=chosen, role=role)  # type: ignore[arg-type]
    with orchestrator_client(url, token, username, password) as api:
        user = api.create_user(body)
    typer.echo(f"user {user.username!r} ({user.role}, id {user.id}) added")
    if not new_password:
        typer.echo(f"password: {chosen}  (shown once; stored only as a hash)")


@user_app.command("list")
def user_list(
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Every user: id, name, role, whether active, since when."""
    with orchestrator_client(url, token, username, password) as api:
        for u in api.list_users():
            active = "active" if u.active else "inactive"
            typer.echo(f"{u.id}\t{u.username}\t{u.role}\t{active}\t{u.created_at:%Y-%m-%d}")


@user_app.command("passwd")
def user_passwd(
    name: str = typer.Argument(..., help="Username."),
    new_password: str = NEW_PASSWORD_OPTION,
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Reset a user's password; the old one stops working at once."""
    from regrasp.api.accounts import PasswordSet

    chosen = new_password or _generated()
    PasswordSet(password=chosen)  # a bad password is refused before any call
    with orchestrator_client(url, token, username, password) as api:
        user = api.find_user(name)
        api.set_password(user.id, chosen)
    typer.echo(f"password of {name!r} reset")
    if not new_password:
        typer.echo(f"password: {chosen}  (shown once; stored only as a hash)")


def _generated() -> str:
    import secrets

    return secrets.token_urlsafe(15)
