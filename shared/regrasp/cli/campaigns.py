"""`regrasp campaign start|status|report`: benchmark campaigns (Table I) via the orchestrator."""

from __future__ import annotations

import typer

from regrasp.cli._app import app
from regrasp.cli._common import (
    PASSWORD_OPTION,
    TOKEN_OPTION,
    URL_OPTION,
    USER_OPTION,
    int_list_option,
    json_object_option,
    orchestrator_client,
)

campaign_app = typer.Typer(
    no_args_is_help=True, help="Benchmark campaigns (Table I) through the orchestrator."
)
app.add_typer(campaign_app, name="campaign")


@campaign_app.command("start")
def campaign_start(
    dataset: str = typer.Argument(..., help="Dataset name or id."),
    networks: str = typer.Option(..., help="Comma-separated network names, e.g. ggcnn,ggcnn2."),
    versions: str = typer.Option(..., help="Comma-separated dataset versions, e.g. 0,2,6."),
    config: str = typer.Option(
        None, help="JSON of TrainConfig fields shared by every run, e.g. '{\"epochs\": 30}'."
    ),
    test_version: int = typer.Option(None, help="Version whose test split scores (highest)."),
    test_split: str = typer.Option(
        "auto", help="auto (the import's split when it recorded one), imported, or recipe."
    ),
    name: str = typer.Option("", help="A label for people."),
    wait: bool = typer.Option(False, help="Follow the campaign until it ends."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Train every network on every version and score each on one test split (admins)."""
    from regrasp.api.campaigns import CampaignCreate

    numbers = int_list_option(versions, "--versions")
    train = json_object_option(config, "--config")
    with orchestrator_client(url, token, username, password) as api:
        ds = api.find_dataset(dataset)
        campaign = api.create_campaign(
            CampaignCreate(
                dataset_id=ds.id,
                name=name,
                networks=[n.strip() for n in networks.split(",") if n.strip()],
                versions=numbers,
                train=train,
                test_version=test_version,
                test_split=test_split,
            )
        )
        typer.echo(
            f"campaign {campaign.id} on {ds.name!r}: {len(campaign.runs)} runs, "
            f"test split of v{campaign.test_version} ({campaign.test_images} images)"
        )
        if wait:
            campaign = api.wait_campaign(campaign.id)
            _echo_campaign(campaign, api)
            if campaign.state != "done":
                raise typer.Exit(1)


@campaign_app.command("status")
def campaign_status(
    campaign_id: int = typer.Argument(None, help="Campaign id (default: list them)."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """A campaign's state and runs (or every campaign, one line each)."""
    with orchestrator_client(url, token, username, password) as api:
        if campaign_id is None:
            names = {d.id: d.name for d in api.list_datasets()}
            for c in api.list_campaigns():
                done = sum(r.state == "done" for r in c.runs)
                typer.echo(
                    f"{c.id}\t{names.get(c.dataset_id, c.dataset_id)}\t{c.state}\t"
                    f"{done}/{len(c.runs)} runs"
                )
            return
        _echo_campaign(api.get_campaign(campaign_id), api)


@campaign_app.command("resume")
def campaign_resume(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Continue a failed campaign: failed runs train again, the others go on (admins)."""
    with orchestrator_client(url, token, username, password) as api:
        _echo_campaign(api.resume_campaign(campaign_id), api)


@campaign_app.command("cancel")
def campaign_cancel(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Cancel a campaign that has not finished; its open jobs are cancelled (admins)."""
    with orchestrator_client(url, token, username, password) as api:
        _echo_campaign(api.cancel_campaign(campaign_id), api)


@campaign_app.command("report")
def campaign_report(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    output: str = typer.Option(None, "--output", "-o", help="Unzip table + figures here."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Print the accuracy table (best per version marked *) and save every figure."""
    import io
    import zipfile
    from pathlib import Path

    with orchestrator_client(url, token, username, password) as api:
        report = api.campaign_report(campaign_id)
        header = "network".ljust(16) + "".join(f"v{v}".rjust(10) for v in report.versions)
        typer.echo(header)
        for network in report.networks:
            line = network.ljust(16)
            for v in report.versions:
                c = next(c for c in report.cells if c.network == network and c.version == v)
                text = f"{100 * c.accuracy:.1f}" if c.accuracy is not None else c.state
                line += (text + ("*" if c.best else "")).rjust(10)
            typer.echo(line)
        typer.echo(f"test split of v{report.test_version}: {report.test_images} images")
        typer.echo(f"stop refining: {'yes' if report.stop.stop else 'no'} ({report.stop.reason})")
        if output:
            folder = Path(output)
            folder.mkdir(parents=True, exist_ok=True)
            data = api.request("GET", f"/campaigns/{campaign_id}/report.zip").content
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                z.extractall(folder)
                typer.echo(f"wrote {len(z.namelist())} files to {folder}")


def _echo_campaign(campaign, api=None) -> None:  # type: ignore[no-untyped-def]
    dataset = (
        repr(api.get_dataset(campaign.dataset_id).name) if api is not None else campaign.dataset_id
    )
    typer.echo(
        f"campaign {campaign.id}: {campaign.state} (dataset {dataset}, "
        f"test split of v{campaign.test_version}, {campaign.test_images} images)"
    )
    for r in campaign.runs:
        acc = f"{r.accuracy:.3f}" if r.accuracy is not None else "-"
        typer.echo(f"  {r.network:<16} v{r.version:<4} {r.state:<11} accuracy {acc}")
    if campaign.retry is not None and not campaign.retry.gave_up:
        typer.echo(
            f"  trainer unreachable: try {campaign.retry.attempts} failed, next at "
            f"{campaign.retry.next_at:%H:%M:%S}"
        )
    if campaign.error:
        typer.echo(f"  error: {campaign.error}")
