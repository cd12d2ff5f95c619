"""`regrasp import|versions|diff|export`, `regrasp admin create`: clients of the orchestrator."""

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

admin_app = typer.Typer(no_args_is_help=True, help="Accounts, straight in the database.")
app.add_typer(admin_app, name="admin")


@app.command("import")
def import_dataset(
    name: str = typer.Argument(..., help="Name of the new dataset."),
    jacquard: str = typer.Option(None, help="Jacquard folder or .zip on the orchestrator host."),
    cornell: str = typer.Option(None, help="Cornell folder on the orchestrator host."),
    prefix: str = typer.Option(None, help="Jacquard tree under this object-store prefix."),
    synthetic: int = typer.Option(None, help="Generate this many synthetic images."),
    size: int = typer.Option(1024, help="Synthetic image side, pixels."),
    seed: int = typer.Option(0, help="Synthetic generator seed."),
    corrupt_fraction: float = typer.Option(0.0, help="Synthetic: fraction of corrupted labels."),
    split: str = typer.Option("object", help="Split kind: object or image."),
    test_fraction: float = typer.Option(0.2, help="Fraction of objects/images held out."),
    split_seed: int = typer.Option(0, help="Seed of the split."),
    description: str = typer.Option("", help="Free text stored with the dataset."),
    wait: bool = typer.Option(True, help="Follow the import with a progress bar."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Import a dataset through the orchestrator (a bad file stops it before version 0)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class ImagesPerSecond(ProgressColumn):
        """Images checked and stored per second (blank until rich has a rate)."""

        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            if task.speed is None or task.description != "uploading":
                return Text("")
            return Text(f"{task.speed:,.1f} images/s")

    from regrasp.api.datasets import (
        CornellSource,
        ImportRequest,
        JacquardSource,
        SplitRequest,
        SyntheticSource,
    )
    from regrasp.platform.errors import InvalidInput

    given = [x is not None for x in (jacquard, cornell, prefix, synthetic)]
    if sum(given) != 1:
        raise InvalidInput("give exactly one of --jacquard, --cornell, --prefix, --synthetic")
    if jacquard is not None or prefix is not None:
        source = JacquardSource(path=jacquard, prefix=prefix)
    elif cornell is not None:
        source = CornellSource(path=cornell)
    else:
        source = SyntheticSource(
            images=synthetic, size=size, seed=seed, corrupt_fraction=corrupt_fraction
        )
    request = ImportRequest(
        name=name,
        description=description,
        source=source,
        split=SplitRequest(kind=split, seed=split_seed, test_fraction=test_fraction),
    )
    with orchestrator_client(url, token, username, password) as api:
        status = api.start_import(request)
        typer.echo(f"import {status.id} of {name!r} queued")
        if not wait:
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            ImagesPerSecond(),
            TimeRemainingColumn(),
        )
        with Progress(*columns) as bar:
            task = bar.add_task("queued", total=None)
            phase = ["queued"]

            def show(st) -> None:  # type: ignore[no-untyped-def]
                if st.state != phase[0]:  # a new phase counts from 0: rate and ETA anew
                    phase[0] = st.state
                    bar.reset(task, description=st.state, total=st.total or None)
                bar.update(task, completed=st.done, total=st.total or None)

            status = api.wait_import(status.id, on_progress=show)
    if status.state != "succeeded":
        typer.echo(f"error: import {status.id} failed: {status.error}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"dataset {name!r} (id {status.dataset_id}) imported: {status.uploaded} files uploaded, "
        f"{status.skipped} already stored"
    )


@app.command()
def versions(
    dataset: str = typer.Argument(..., help="Dataset name or id."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """List the versions of a dataset with their counts."""
    with orchestrator_client(url, token, username, password) as api:
        found = api.find_dataset(dataset)
        typer.echo(f"{'version':>7} {'parent':>6} {'images':>8} {'grasps':>9}  message")
        for v in api.list_versions(found.id):
            parent = "-" if v.parent_number is None else str(v.parent_number)
            typer.echo(
                f"{v.number:>7} {parent:>6} {v.image_count:>8} {v.grasp_count:>9}  {v.message}"
            )


@app.command()
def diff(
    dataset: str = typer.Argument(..., help="Dataset name or id."),
    from_version: int = typer.Argument(..., help="Older version."),
    to_version: int = typer.Argument(..., help="Newer version."),
    limit: int = typer.Option(20, help="Changes listed per kind (counts are always complete)."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """What changed between two versions, and why."""
    with orchestrator_client(url, token, username, password) as api:
        found = api.find_dataset(dataset)
        d = api.diff(found.id, from_version, to_version, limit=limit)
    typer.echo(
        f"v{from_version} → v{to_version}: +{d.added_grasp_count} / -{d.removed_grasp_count} "
        f"grasps, +{len(d.added_images)} / -{len(d.removed_images)} images"
    )
    for image in d.removed_images[:limit]:
        typer.echo(f"  - image {image.object}/{image.image}")
    for image in d.added_images[:limit]:
        typer.echo(f"  + image {image.object}/{image.image}")
    for g in d.added_grasps:
        why = ", ".join(x for x in (g.source, g.note) if x)
        typer.echo(f"  + grasp {g.image} {';'.join(f'{v:g}' for v in g.grasp)} ({why})")
    for g in d.removed_grasps:
        typer.echo(
            f"  - grasp {g.image} {';'.join(f'{v:g}' for v in g.grasp)} ({g.removed_reason})"
        )


@app.command()
def export(
    dataset: str = typer.Argument(..., help="Dataset name or id."),
    version: int = typer.Option(None, help="Version to export (default: the latest)."),
    output: str = typer.Option(None, "--output", "-o", help="Zip file to write."),
    to_store: bool = typer.Option(False, help="Write to the object store instead of a zip."),
    prefix: str = typer.Option(None, help="With --to-store: sub-folder under the export prefix."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
) -> None:
    """Export a version in the Jacquard layout with its change manifest."""
    with orchestrator_client(url, token, username, password) as api:
        found = api.find_dataset(dataset)
        v = found.latest_version if version is None else version
        if v is None:
            typer.echo(f"error: dataset {found.name!r} has no version yet", err=True)
            raise typer.Exit(1)
        if to_store:
            done = api.export_to_store(found.id, v, prefix=prefix)
            typer.echo(f"exported v{v}: {done.files} files, {done.bytes} bytes at {done.prefix}")
            return
        path = output or f"{found.name}-v{v}.zip"
        size = api.download_export(found.id, v, path)
    typer.echo(f"exported v{v} to {path} ({size} bytes)")


@admin_app.command("create")
def admin_create(
    username: str = typer.Argument(..., help="Name of the new admin."),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
    ),
) -> None:
    """Create an admin in the configured database (bootstrap: works before any admin exists)."""
    from regrasp.platform.accounts import create_user
    from regrasp.platform.settings import load_settings
    from regrasp.platform.store.db import migrations
    from regrasp.platform.store.db.engine import make_engine, session_scope

    s = load_settings()
    engine = make_engine(s.database_url)
    try:
        migrations.prepare(engine, mode=s.mode)
        with session_scope(engine) as session:
            user = create_user(session, username=username, password=password, role="admin")
            typer.echo(f"created admin {user.username!r} (id {user.id})")
    finally:
        engine.dispose()
