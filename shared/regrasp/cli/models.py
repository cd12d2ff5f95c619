"""`regrasp model list|show|promote`: the model registry through the orchestrator.

`promote` is the one way a model reaches robots: it points the `production` alias at it,
and every inference replica serves it within seconds, without a restart.
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

model_app = typer.Typer(no_args_is_help=True, help="Registered models and their aliases.")
app.add_typer(model_app, name="model")


@model_app.command("list")
def model_list(
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Every model, newest first: accuracy, dataset version, aliases."""
    with orchestrator_client(url, token, username, password) as api:
        for m in api.list_models():
            typer.echo(_line(m))


@model_app.command("show")
def model_show(
    model: str = typer.Argument("production", help="Model id, or an alias (default: production)."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """One model (by id or alias) with all its metrics."""
    with orchestrator_client(url, token, username, password) as api:
        m = api.registered_model(int(model)) if model.isdigit() else api.aliased_model(model)
    typer.echo(_line(m))
    for name, value in sorted(m.metrics.items()):
        typer.echo(f"  {name}: {value}")


@model_app.command("promote")
def model_promote(
    model_id: int = typer.Argument(..., help="Model id (see `regrasp model list`)."),
    alias: str = typer.Option("production", help="Alias to point at it."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Make a model what robots get (admins); replicas follow within seconds."""
    with orchestrator_client(url, token, username, password) as api:
        m = api.promote_model(model_id, alias=alias)
    typer.echo(f"{alias} -> model {m.id}")
    typer.echo(_line(m))


def _line(m) -> str:  # type: ignore[no-untyped-def]
    accuracy = f"{m.accuracy:.3f} ({m.accuracy_metric})" if m.accuracy is not None else "-"
    version = f"v{m.dataset_version}" if m.dataset_version is not None else "-"
    aliases = ",".join(m.aliases) or "-"
    return (
        f"{m.id}\t{m.architecture}\t{m.status}\tdataset {m.dataset_id or '-'} {version}\t"
        f"accuracy {accuracy}\taliases {aliases}"
    )
