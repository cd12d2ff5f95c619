"""`regrasp train`: a training job run here, in-process, with a progress bar."""

from __future__ import annotations

import typer

from regrasp.cli._app import app
from regrasp.cli._common import json_object_option


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
    import os
    import signal
    import socket
    import threading

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from regrasp.learn import queue as jobs
    from regrasp.learn.worker import ClaimedJob, run_claimed, validate_payload
    from regrasp.platform.errors import InvalidInput
    from regrasp.platform.settings import load_settings
    from regrasp.platform.store.db import migrations
    from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope
    from regrasp.platform.store.objects import store_from_settings

    extra = json_object_option(config, "--config")
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
        migrations.prepare(engine, mode=s.mode)
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
