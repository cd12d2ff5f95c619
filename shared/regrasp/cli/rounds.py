"""`regrasp round start|status|audit|apply|cancel|resume`: refinement rounds through the
orchestrator."""

from __future__ import annotations

import typer

from regrasp.cli._app import app
from regrasp.cli._common import (
    PASSWORD_OPTION,
    TOKEN_OPTION,
    URL_OPTION,
    USER_OPTION,
    json_object_option,
    orchestrator_client,
)
from regrasp.workflows.rounds.describe import ProgressLines, apply_summary, training_line

round_app = typer.Typer(no_args_is_help=True, help="Refinement rounds through the orchestrator.")
app.add_typer(round_app, name="round")


@round_app.command("start")
def round_start(
    dataset: str = typer.Argument(..., help="Dataset name or id."),
    version: int = typer.Option(None, help="Base version (default: the latest)."),
    config: str = typer.Option(
        None, help='JSON of RoundConfig fields, e.g. \'{"train": {"epochs": 30}}\'.'
    ),
    model_id: int = typer.Option(None, help="Reuse this registered model (skips training)."),
    flag_threshold: float = typer.Option(None, help="Flag below this top-1 IoU (0.2)."),
    top_k: int = typer.Option(None, help="Predictions kept per image (5)."),
    flag: str = typer.Option(None, help="'paper' (top-1 IoU rule) or 'score' (label quality)."),
    review_budget: int = typer.Option(None, help="Most review items, likeliest errors first."),
    review_hours: float = typer.Option(
        None, help="Review time in hours (items at the team's recorded pace)."
    ),
    wait: bool = typer.Option(False, help="Follow the round until it is reviewing or final."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Start a round on a dataset version (admins)."""
    from regrasp.api.rounds import RoundCreate

    values = json_object_option(config, "--config")
    for key, value in (
        ("model_id", model_id),
        ("flag_threshold", flag_threshold),
        ("top_k", top_k),
        ("flag", flag),
        ("review_budget", review_budget),
        ("review_budget_hours", review_hours),
    ):
        if value is not None:
            values[key] = value
    with orchestrator_client(url, token, username, password) as api:
        ds = api.find_dataset(dataset)
        rnd = api.create_round(RoundCreate(dataset_id=ds.id, version=version, **values))
        typer.echo(f"round {rnd.id} on {ds.name!r} v{rnd.base_version}: {rnd.state}")
        if wait:
            rnd = api.wait_round(rnd.id, poll=2.0, on_progress=ProgressLines(typer.echo))
            _echo_round(rnd, api)


@round_app.command("status")
def round_status(
    round_id: int = typer.Argument(None, help="Round id (default: list the rounds)."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """A round's state, timings per state and counts (or every round, one line each)."""
    with orchestrator_client(url, token, username, password) as api:
        if round_id is None:
            names = {d.id: d.name for d in api.list_datasets()}
            for r in api.list_rounds():
                typer.echo(
                    f"{r.id}\t{names.get(r.dataset_id, r.dataset_id)} v{r.base_version}\t"
                    f"{r.state}\t"
                    f"result v{r.result_version if r.result_version is not None else '-'}"
                )
            return
        _echo_round(api.get_round(round_id), api)


@round_app.command("audit")
def round_audit(
    round_id: int = typer.Argument(..., help="Round id (reviewing)."),
    count: int = typer.Option(25, min=0, help="Unflagged images sampled at random."),
    top: int = typer.Option(
        25, min=0, help="First, every one of the unflagged images the flag ranks highest."
    ),
    seed: int = typer.Option(0, help="Seed of the random sample."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Queue an audit of a reviewing round's unflagged images (admins): its reviews turn the
    round's label-noise estimate from a lower bound into an interval."""
    from regrasp.api.refinement import AuditCreate

    with orchestrator_client(url, token, username, password) as api:
        done = api.add_audit(round_id, AuditCreate(count=count, top=top, seed=seed))
        typer.echo(f"round {round_id}: {done.added} audit items added, {done.audited} in all")


@round_app.command("apply")
def round_apply(
    round_id: int = typer.Argument(..., help="Round id."),
    force: bool = typer.Option(False, help="Undecided items count as true negatives."),
    wait: bool = typer.Option(True, help="Wait until the new version exists."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Apply a round's decisions as the next dataset version (admins)."""
    with orchestrator_client(url, token, username, password) as api:
        if api.get_round(round_id).state == "reviewing":
            typer.echo(f"applying: {apply_summary(api.apply_preview(round_id))}")
        rnd = api.apply_round(round_id, force=force)
        if wait:
            rnd = api.wait_round(round_id, until=("done", "failed", "cancelled"))
        _echo_round(rnd, api)
        if rnd.state in ("failed", "cancelled"):
            raise typer.Exit(1)


@round_app.command("cancel")
def round_cancel(
    round_id: int = typer.Argument(..., help="Round id."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Cancel a round that has not started applying (admins)."""
    with orchestrator_client(url, token, username, password) as api:
        _echo_round(api.cancel_round(round_id), api)


@round_app.command("resume")
def round_resume(
    round_id: int = typer.Argument(..., help="Round id."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Retry a failed round from the state it failed in (admins)."""
    with orchestrator_client(url, token, username, password) as api:
        _echo_round(api.resume_round(round_id), api)


def _echo_round(rnd, api=None) -> None:  # type: ignore[no-untyped-def]
    c = rnd.counts
    dataset = repr(api.get_dataset(rnd.dataset_id).name) if api is not None else rnd.dataset_id
    typer.echo(
        f"round {rnd.id}: {rnd.state} (dataset {dataset} v{rnd.base_version}"
        + (f" -> v{rnd.result_version}" if rnd.result_version is not None else "")
        + f"); predicted {c.images_predicted}, flagged {c.flagged}, "
        f"items {c.items}, decided {c.decided}"
    )
    for state, t in rnd.timings.items():
        seconds = f"{t.seconds:.1f} s" if t.seconds is not None else "-"
        typer.echo(f"  {state:<11} {seconds}")
    for t in rnd.training if rnd.state in ("created", "training") else ():
        typer.echo(f"  training    job {t.job_id}: {training_line(t)}")
    if rnd.retry is not None and not rnd.retry.gave_up:
        typer.echo(
            f"  retrying {rnd.retry.state}: try {rnd.retry.attempts} failed, next at "
            f"{rnd.retry.next_at:%H:%M:%S}"
        )
    if rnd.error:
        typer.echo(f"  error: {rnd.error}")
