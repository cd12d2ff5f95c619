"""The `regrasp` command: a thin Typer shell over the library.

Each subcommand builds settings, calls the library, and turns a `RegraspError` into one
line on stderr with exit code 1. Subcommands that need torch import it inside the command.
"""

from __future__ import annotations

import sys

import typer

from regrasp.errors import RegraspError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Regrasp: human-in-the-loop grasp dataset refinement.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema management.")
app.add_typer(db_app, name="db")


@app.command()
def settings() -> None:
    """Print the effective settings (secrets masked)."""
    from regrasp.settings import load_settings

    s = load_settings()
    for name, value in s.model_dump().items():
        typer.echo(f"{name} = {value}")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from regrasp.settings import load_settings
    from regrasp.store.db import migrations

    s = load_settings()
    migrations.upgrade(s.database_url, revision)
    typer.echo(f"database at {migrations.current(s.database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Revert migrations down to REVISION."""
    from regrasp.settings import load_settings
    from regrasp.store.db import migrations

    s = load_settings()
    migrations.downgrade(s.database_url, revision)
    typer.echo(f"database at {migrations.current(s.database_url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's current revision."""
    from regrasp.settings import load_settings
    from regrasp.store.db import migrations

    typer.echo(migrations.current(load_settings().database_url) or "empty")


@app.command()
def train(
    dataset: str = typer.Option(..., help="Dataset name or id."),
    version: int = typer.Option(None, min=0, help="Dataset version (default: the latest)."),
    arch: str = typer.Option("mobilenet_v2", help="Registered network name, e.g. ggcnn."),
    epochs: int = typer.Option(None, help="Epochs (default: the paper's 100)."),
    batch_size: int = typer.Option(None, help="Images per step (default 32)."),
    lr: float = typer.Option(None, help="Adam learning rate (default 5e-4)."),
    input_size: int = typer.Option(None, help="Network input side, pixels (default 300)."),
    channels: str = typer.Option(None, help="depth, rgb or rgbd (default depth)."),
    max_images: int = typer.Option(None, help="Cap on training images, for quick runs."),
    seed: int = typer.Option(None, help="Seed of weights, data order and augmentation."),
    num_workers: int = typer.Option(None, help="DataLoader worker processes."),
    config: str = typer.Option(
        None, help='Further TrainConfig fields as JSON, e.g. \'{"amp":"off"}\'.'
    ),
    device: str = typer.Option(None, help="torch device, e.g. cuda:0 or cpu (default: auto)."),
) -> None:
    """Train a network on a dataset version here, in-process, and register the model."""
    import json
    import os
    import signal
    import socket
    import threading

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from regrasp import jobs
    from regrasp.errors import InvalidInput
    from regrasp.settings import load_settings
    from regrasp.store.db import migrations
    from regrasp.store.db.engine import make_engine, make_session_factory, session_scope
    from regrasp.store.objects import store_from_settings
    from regrasp.training_jobs import ClaimedJob, run_claimed, validate_payload

    try:
        extra = json.loads(config) if config else {}
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--config is not JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise InvalidInput("--config must be a JSON object of TrainConfig fields")
    options = {
        "architecture": arch,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "input_size": input_size,
        "channels": channels,
        "max_images": max_images,
        "seed": seed,
        "num_workers": num_workers,
    }
    train_config = {**extra, **{k: v for k, v in options.items() if v is not None}}

    s = load_settings()
    engine = make_engine(s.database_url)
    try:
        if s.mode == "development":
            migrations.upgrade(engine)
        else:
            migrations.check_schema(engine)
        sessions = make_session_factory(engine)
        store = store_from_settings(s)
        worker_id = f"cli-{socket.gethostname()}-{os.getpid()}"
        with session_scope(sessions) as session:
            dataset_ref: str | int = int(dataset) if dataset.isdigit() else dataset
            payload = validate_payload(
                session,
                "train",
                {"dataset": dataset_ref, "version": version, "config": train_config},
            )
            job_id = jobs.submit(session, "train", payload, max_attempts=1).id
        with session_scope(sessions) as session:
            row = jobs.claim(session, worker_id, job_id=job_id)
            if row is None:
                raise InvalidInput(f"job {job_id} was taken by a worker before this command")
            claimed = ClaimedJob.from_row(row)

        interrupted = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(f"job {job_id}: preparing", total=1000, stats="")

            def show(fraction: float, metrics: dict) -> None:
                if metrics.get("phase") == "train":
                    acc = metrics.get("val_accuracy")
                    stats = f"loss {metrics['loss']:.4f}" + (
                        f"  val acc {acc:.1%}" if acc is not None else ""
                    )
                    desc = f"job {job_id}: epoch {metrics['epoch']}/{metrics['epochs']}"
                    bar.update(task, completed=fraction * 1000, description=desc, stats=stats)
                elif metrics.get("phase") == "cache":
                    done, total = metrics.get("cached", 0), metrics.get("images", 0)
                    bar.update(task, description=f"job {job_id}: caching {done}/{total} images")
                else:  # final evaluation: keep the last epoch's line, say what runs now
                    bar.update(task, completed=fraction * 1000)

            try:
                outcome = run_claimed(
                    sessions, store, claimed, device=device, on_progress=show, shutdown=interrupted
                )
            finally:
                signal.signal(signal.SIGINT, previous)
            if outcome.status == "succeeded":
                bar.update(task, completed=1000)
        if outcome.status == "released":  # Ctrl-C: nobody else should pick it up
            with session_scope(sessions) as session:
                jobs.cancel(session, job_id)
            typer.echo(f"error: job {job_id} interrupted and cancelled", err=True)
            raise typer.Exit(130)
        if outcome.status != "succeeded":
            typer.echo(f"error: job {job_id} {outcome.status}: {outcome.error}", err=True)
            raise typer.Exit(1)
        result = outcome.result or {}
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.get("metrics", {}).items())
        typer.echo(f"model {result.get('model_id')} registered (job {job_id}): {metrics}")
    finally:
        engine.dispose()


# --- orchestrator API clients: import, versions, diff, export, admin ----------------------

admin_app = typer.Typer(no_args_is_help=True, help="Accounts, straight in the database.")
app.add_typer(admin_app, name="admin")

_URL = typer.Option(None, "--url", help="Orchestrator URL (default REGRASP_ORCHESTRATOR_URL).")
_TOKEN = typer.Option(
    None, "--token", help="Bearer token or API key (default REGRASP_ORCHESTRATOR_TOKEN)."
)
_USER = typer.Option(None, "--username", "-u", help="Log in with this user instead of a token.")
_PASSWORD = typer.Option(None, "--password", help="Password for --username (prompted if absent).")


def _orchestrator(url: str | None, token: str | None, username: str | None, password: str | None):  # type: ignore[no-untyped-def]
    """A client of the orchestrator, signed in with a token/API key or a password."""
    from regrasp.clients.orchestrator import OrchestratorClient
    from regrasp.settings import load_settings

    s = load_settings()
    client = OrchestratorClient(url or s.orchestrator_url, timeout=600.0)
    if username:
        client.login(username, password or typer.prompt("password", hide_input=True))
    else:
        configured = s.orchestrator_token.get_secret_value() if s.orchestrator_token else None
        client.use_credential(token or configured)
    return client


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
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """Import a dataset through the orchestrator (validated in full before anything is written)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from regrasp.clients.orchestrator import (
        CornellSource,
        ImportRequest,
        JacquardSource,
        SplitRequest,
        SyntheticSource,
    )
    from regrasp.errors import InvalidInput

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
    with _orchestrator(url, token, username, password) as api:
        status = api.start_import(request)
        typer.echo(f"import {status.id} of {name!r} queued")
        if not wait:
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns) as bar:
            task = bar.add_task("queued", total=None)

            def show(st) -> None:  # type: ignore[no-untyped-def]
                bar.update(task, description=st.state, completed=st.done, total=st.total or None)

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
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """List the versions of a dataset with their counts."""
    with _orchestrator(url, token, username, password) as api:
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
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """What changed between two versions, and why."""
    with _orchestrator(url, token, username, password) as api:
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
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """Export a version in the Jacquard layout with its change manifest."""
    with _orchestrator(url, token, username, password) as api:
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
    from regrasp.accounts import create_user
    from regrasp.settings import load_settings
    from regrasp.store.db import migrations
    from regrasp.store.db.engine import make_engine, session_scope

    s = load_settings()
    engine = make_engine(s.database_url)
    try:
        if s.mode == "development":
            migrations.upgrade(engine)
        else:
            migrations.check_schema(engine)
        with session_scope(engine) as session:
            user = create_user(session, username=username, password=password, role="admin")
            typer.echo(f"created admin {user.username!r} (id {user.id})")
    finally:
        engine.dispose()


# --- refinement rounds (regrasp round start|status|apply|cancel) ------------------------------

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
    wait: bool = typer.Option(False, help="Follow the round until it is reviewing or final."),
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """Start a round on a dataset version (admins)."""
    import json

    from regrasp.clients.orchestrator import RoundCreate

    values = json.loads(config) if config else {}
    for key, value in (
        ("model_id", model_id),
        ("flag_threshold", flag_threshold),
        ("top_k", top_k),
    ):
        if value is not None:
            values[key] = value
    with _orchestrator(url, token, username, password) as api:
        ds = api.find_dataset(dataset)
        rnd = api.create_round(RoundCreate(dataset_id=ds.id, version=version, **values))
        typer.echo(f"round {rnd.id} on {ds.name!r} v{rnd.base_version}: {rnd.state}")
        if wait:
            rnd = api.wait_round(rnd.id, on_progress=lambda r: None)
            _echo_round(rnd)


@round_app.command("status")
def round_status(
    round_id: int = typer.Argument(None, help="Round id (default: list the rounds)."),
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """A round's state, timings per state and counts (or every round, one line each)."""
    with _orchestrator(url, token, username, password) as api:
        if round_id is None:
            for r in api.list_rounds():
                typer.echo(
                    f"{r.id}\tdataset {r.dataset_id} v{r.base_version}\t{r.state}\t"
                    f"result v{r.result_version if r.result_version is not None else '-'}"
                )
            return
        _echo_round(api.get_round(round_id))


@round_app.command("apply")
def round_apply(
    round_id: int = typer.Argument(..., help="Round id."),
    force: bool = typer.Option(False, help="Undecided items count as true negatives."),
    wait: bool = typer.Option(True, help="Wait until the new version exists."),
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """Apply a round's decisions as the next dataset version (admins)."""
    with _orchestrator(url, token, username, password) as api:
        rnd = api.apply_round(round_id, force=force)
        if wait:
            rnd = api.wait_round(round_id, until=("done", "failed", "cancelled"))
        _echo_round(rnd)
        if rnd.state in ("failed", "cancelled"):
            raise typer.Exit(1)


@round_app.command("cancel")
def round_cancel(
    round_id: int = typer.Argument(..., help="Round id."),
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """Cancel a round that has not started applying (admins)."""
    with _orchestrator(url, token, username, password) as api:
        _echo_round(api.cancel_round(round_id))


def _echo_round(rnd) -> None:  # type: ignore[no-untyped-def]
    c = rnd.counts
    typer.echo(
        f"round {rnd.id}: {rnd.state} (dataset {rnd.dataset_id} v{rnd.base_version}"
        + (f" -> v{rnd.result_version}" if rnd.result_version is not None else "")
        + f"); predicted {c.images_predicted}, flagged {c.flagged}, "
        f"items {c.items}, decided {c.decided}"
    )
    for state, t in rnd.timings.items():
        seconds = f"{t.seconds:.1f} s" if t.seconds is not None else "-"
        typer.echo(f"  {state:<11} {seconds}")
    if rnd.error:
        typer.echo(f"  error: {rnd.error}")


# --- one machine: `regrasp up` (the embedded stack) and `regrasp demo` (the unattended loop) --


@app.command()
def up(
    data_dir: str = typer.Option(
        None, help="Folder of the SQLite file, object store and logs (default REGRASP_DATA_DIR)."
    ),
    orchestrator_port: int = typer.Option(8000, help="Orchestrator API port."),
    trainer_port: int = typer.Option(8001, help="Trainer API port."),
    inference_port: int = typer.Option(3000, help="Inference (BentoML) port."),
    ui_port: int = typer.Option(8501, help="Review UI (Streamlit) port."),
    demo_data: bool = typer.Option(
        True, help="On first run, import a synthetic demo dataset and start round 1."
    ),
    images: int = typer.Option(200, min=10, help="Demo dataset: synthetic images."),
    size: int = typer.Option(256, min=64, help="Demo dataset: image side, pixels."),
    corrupt_fraction: float = typer.Option(0.25, min=0.0, max=1.0, help="Demo: corrupted."),
    device: str = typer.Option(None, help="Trainer worker's torch device (default: auto)."),
    startup_timeout: float = typer.Option(600.0, help="Seconds to wait for healthy services."),
) -> None:
    """Run all four services and a trainer worker here, supervised, until Ctrl-C."""
    import os
    import threading
    from pathlib import Path

    from regrasp.clients.orchestrator import OrchestratorClient
    from regrasp.demo import StackPorts, SyntheticSpec, bootstrap_demo, ensure_admin, local_stack
    from regrasp.settings import load_settings
    from regrasp.supervisor import Supervisor, stop_on_signals

    s = load_settings(**({"data_dir": Path(data_dir)} if data_dir else {}))
    ports = StackPorts(orchestrator_port, trainer_port, inference_port, ui_port)
    stack = local_stack(s, ports=ports, base_env=os.environ)
    password = ensure_admin(
        s.database_url,
        username=s.admin_username,
        password=s.admin_password.get_secret_value() if s.admin_password else None,
        development=s.mode == "development",
    )
    typer.echo(f"regrasp: data in {stack.data_dir} ({s.database_url.split(':', 1)[0]})")
    supervisor = Supervisor(stack.specs(worker_device=device))
    with stop_on_signals() as stop, supervisor:
        supervisor.wait_healthy(timeout=startup_timeout, cancel=stop)
        lines = [
            "regrasp is up:",
            f"  review UI          {stack.url('review_ui')}",
            f"  orchestrator API   {stack.url('orchestrator')}/docs",
            f"  inference          {stack.url('inference')}  (docs {stack.url('inference')}/docs)",
            f"  trainer API        {stack.url('trainer')}/docs",
        ]
        if password is not None and s.admin_password is None:
            lines.append(
                f"  admin              {s.admin_username!r} / {password}  "
                "(generated; shown once, stored only as a hash)"
            )
        elif password is not None:
            lines.append(f"  admin              {s.admin_username!r} (REGRASP_ADMIN_PASSWORD)")
        typer.echo("\n".join(lines) + "\nCtrl-C stops everything.", err=False)

        def bootstrap() -> None:
            try:
                with OrchestratorClient(stack.url("orchestrator"), timeout=120.0) as api:
                    api.use_credential(stack.service_key)
                    spec = SyntheticSpec(
                        images=images, size=size, corrupt_fraction=corrupt_fraction
                    )
                    say = lambda m: typer.echo(f"regrasp: {m}")  # noqa: E731
                    rnd = bootstrap_demo(api, spec=spec, on_progress=say)
                    if rnd is None:
                        return
                    rnd = api.wait_round(rnd.id, timeout=24 * 3600.0, poll=2.0)
                    say(
                        f"round {rnd.id} is {rnd.state}: {rnd.counts.items} flagged images "
                        f"to review at {stack.url('review_ui')}"
                        + (f" ({rnd.error})" if rnd.error else "")
                    )
            except RegraspError as exc:
                typer.echo(f"regrasp: demo data not set up: {exc}", err=True)

        if demo_data:
            threading.Thread(target=bootstrap, name="demo-data", daemon=True).start()
        stop.wait()
        typer.echo("regrasp: stopping (Ctrl-C again to force)")


@app.command()
def demo(
    url: str = typer.Option(
        None, "--url", help="Use the services running there instead of starting them."
    ),
    trainer_url: str = typer.Option(None, help="Trainer URL with --url (default settings)."),
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
    data_dir: str = typer.Option(
        None, help="Data folder of the services started here (default: a temporary one)."
    ),
    output: str = typer.Option("regrasp-demo", "--output", "-o", help="Folder for the charts."),
    rounds: int = typer.Option(3, min=1, help="Rounds to run."),
    images: int = typer.Option(200, min=10, help="Synthetic images."),
    size: int = typer.Option(256, min=64, help="Synthetic image side, pixels."),
    corrupt_fraction: float = typer.Option(0.25, min=0.0, max=1.0, help="Corrupted fraction."),
    seed: int = typer.Option(0, help="Generator seed."),
    error_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Simulated reviewer errors."),
    epochs: int = typer.Option(None, help="Epochs per round (default 4)."),
    input_size: int = typer.Option(None, help="Network input side (default 128)."),
    clean_eval: bool = typer.Option(
        True, help="Also score each model on a clean twin dataset (true accuracy)."
    ),
    device: str = typer.Option(None, help="Trainer worker's torch device (default: auto)."),
) -> None:
    """Run refinement rounds unattended: synthetic data, simulated reviewer, table + charts."""
    import os
    import secrets
    import shutil
    import tempfile
    import time
    from contextlib import ExitStack
    from pathlib import Path

    from rich.console import Console

    from regrasp.clients.orchestrator import OrchestratorClient, UserCreate
    from regrasp.clients.trainer import TrainerClient
    from regrasp.demo import (
        DEMO_TRAIN,
        StackPorts,
        SyntheticSpec,
        ensure_admin,
        free_ports,
        import_synthetic,
        local_stack,
        round_table,
        run_rounds,
        synthetic_truth,
        write_charts,
    )
    from regrasp.settings import load_settings
    from regrasp.supervisor import LogFiles, Supervisor
    from regrasp.synthetic.reviewer import SimulatedReviewer

    console = Console()
    started = time.monotonic()
    train = dict(DEMO_TRAIN)
    if epochs is not None:
        train["epochs"] = epochs
    if input_size is not None:
        train["input_size"] = input_size
    spec = SyntheticSpec(images=images, size=size, seed=seed, corrupt_fraction=corrupt_fraction)
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    with ExitStack() as cleanup:
        if url is None:
            owned = data_dir is None
            folder = Path(data_dir or tempfile.mkdtemp(prefix="regrasp-demo-"))
            if owned:
                cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
            s = load_settings(data_dir=folder)
            ports = StackPorts(*free_ports(4))
            stack = local_stack(s, ports=ports, base_env=os.environ)
            admin_password = ensure_admin(
                s.database_url,
                username="demo-admin",
                password=None,
                development=s.mode == "development",
            )
            logs = stack.data_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            sink = LogFiles(logs)
            cleanup.callback(sink.close)
            supervisor = Supervisor(
                stack.specs(ui=False, worker_device=device),
                output=sink,
                on_crash=lambda c: console.print(
                    f"[red]{c.name} exited with {c.returncode}; restarting (log {logs})[/red]"
                ),
            )
            console.print(f"starting the services (data {stack.data_dir}, logs {logs}) …")
            cleanup.enter_context(supervisor)
            supervisor.wait_healthy(timeout=600.0)
            admin = cleanup.enter_context(
                OrchestratorClient(stack.url("orchestrator"), timeout=120.0)
            )
            if admin_password is not None:
                admin.login("demo-admin", admin_password)
            else:  # a reused data folder: its admin is unknown here, the service key is admin
                admin.use_credential(stack.service_key)
            trainer = cleanup.enter_context(
                TrainerClient(stack.url("trainer"), credential=stack.service_key, timeout=60.0)
            )
        else:
            s = load_settings()
            admin = cleanup.enter_context(_orchestrator(url, token, username, password))
            credential = admin._http.headers.get("Authorization", "").removeprefix("Bearer ")
            trainer = cleanup.enter_context(
                TrainerClient(trainer_url or s.trainer_url, credential=credential, timeout=60.0)
            )
        console.print(
            f"importing {name!r}: {spec.images} synthetic images of {spec.size}² px, "
            f"{spec.corrupt_fraction:.0%} corrupted (and its clean twin)"
            if clean_eval
            else f"importing {name!r}: {spec.images} images, {spec.corrupt_fraction:.0%} corrupted"
        )
        dataset_id = import_synthetic(admin, name=name, spec=spec)
        clean_id = (
            import_synthetic(admin, name=f"{name}-clean", spec=spec, clean=True)
            if clean_eval
            else None
        )
        truth = synthetic_truth(spec)
        reviewer_password = secrets.token_urlsafe(18)
        reviewer_name = f"{name}-reviewer"
        admin.create_user(
            UserCreate(username=reviewer_name, password=reviewer_password, role="annotator")
        )
        reviewer_api = cleanup.enter_context(OrchestratorClient(admin.base_url, timeout=120.0))
        reviewer_api.login(reviewer_name, reviewer_password)
        console.print(
            f"{rounds} rounds: {train['architecture']} at {train['input_size']}² px, "
            f"{train['epochs']} epochs; simulated reviewer error rate {error_rate:.0%}"
        )
        rows = run_rounds(
            admin,
            reviewer_api,
            trainer,
            dataset_id=dataset_id,
            truth=truth,
            reviewer=SimulatedReviewer(error_rate=error_rate, seed=seed),
            rounds=rounds,
            train=train,
            clean_dataset_id=clean_id,
            on_status=lambda m: console.print(f"  {m}", style="dim"),
        )
        console.print(round_table(rows, title=f"{name}: {rounds} rounds"))
        written = write_charts(rows, Path(output))
        console.print(f"charts: {', '.join(str(p) for p in written)}")
        console.print(f"demo took {time.monotonic() - started:.0f} s")


# --- benchmark campaigns (regrasp campaign start|status|report) ------------------------------

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
    name: str = typer.Option("", help="A label for people."),
    wait: bool = typer.Option(False, help="Follow the campaign until it ends."),
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """Train every network on every version and score each on one test split (admins)."""
    import json

    from regrasp.clients.orchestrator import CampaignCreate

    with _orchestrator(url, token, username, password) as api:
        ds = api.find_dataset(dataset)
        campaign = api.create_campaign(
            CampaignCreate(
                dataset_id=ds.id,
                name=name,
                networks=[n.strip() for n in networks.split(",") if n.strip()],
                versions=[int(v) for v in versions.split(",") if v.strip()],
                train=json.loads(config) if config else {},
                test_version=test_version,
            )
        )
        typer.echo(
            f"campaign {campaign.id} on {ds.name!r}: {len(campaign.runs)} runs, "
            f"test split of v{campaign.test_version} ({campaign.test_images} images)"
        )
        if wait:
            campaign = api.wait_campaign(campaign.id)
            _echo_campaign(campaign)
            if campaign.state != "done":
                raise typer.Exit(1)


@campaign_app.command("status")
def campaign_status(
    campaign_id: int = typer.Argument(None, help="Campaign id (default: list them)."),
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """A campaign's state and runs (or every campaign, one line each)."""
    with _orchestrator(url, token, username, password) as api:
        if campaign_id is None:
            for c in api.list_campaigns():
                done = sum(r.state == "done" for r in c.runs)
                typer.echo(f"{c.id}\tdataset {c.dataset_id}\t{c.state}\t{done}/{len(c.runs)} runs")
            return
        _echo_campaign(api.get_campaign(campaign_id))


@campaign_app.command("report")
def campaign_report(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    output: str = typer.Option(None, "--output", "-o", help="Unzip table + figures here."),
    url: str = _URL,
    token: str = _TOKEN,
    username: str = _USER,
    password: str = _PASSWORD,
) -> None:
    """Print the accuracy table (best per version marked *) and save every figure."""
    import io
    import zipfile
    from pathlib import Path

    with _orchestrator(url, token, username, password) as api:
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


def _echo_campaign(campaign) -> None:  # type: ignore[no-untyped-def]
    typer.echo(
        f"campaign {campaign.id}: {campaign.state} (dataset {campaign.dataset_id}, "
        f"test split of v{campaign.test_version}, {campaign.test_images} images)"
    )
    for r in campaign.runs:
        acc = f"{r.accuracy:.3f}" if r.accuracy is not None else "-"
        typer.echo(f"  {r.network:<16} v{r.version:<4} {r.state:<11} accuracy {acc}")
    if campaign.error:
        typer.echo(f"  error: {campaign.error}")


def main() -> None:
    """Console entry point: domain errors become one line and exit code 1."""
    try:
        app()
    except RegraspError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
