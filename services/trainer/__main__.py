"""`python -m services.trainer serve|worker`: start the trainer API or a worker."""

from __future__ import annotations

import logging

import typer

from regrasp.cli._app import run

cli = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)


@cli.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default: settings.bind_host)."),
    port: int = typer.Option(8001, help="Port to listen on."),
) -> None:
    """Serve the trainer API (no training happens in this process)."""
    import uvicorn

    from regrasp.platform.settings import load_settings
    from services.trainer.app import create_app

    settings = load_settings()
    uvicorn.run(create_app(settings), host=host or settings.bind_host, port=port, log_level="info")


@cli.command()
def worker(
    worker_id: str = typer.Option(None, help="Name in the jobs table (default host-pid)."),
    poll_interval: float = typer.Option(None, help="Seconds between claims when idle."),
    heartbeat_interval: float = typer.Option(None, help="Seconds between heartbeats."),
    heartbeat_timeout: float = typer.Option(
        None, help="Seconds without heartbeat before a job counts as lost and is requeued."
    ),
    kind: list[str] = typer.Option(None, help="Only claim jobs of this kind (repeatable)."),
    device: str = typer.Option(None, help="torch device, e.g. cuda or cpu (default: auto)."),
    max_jobs: int = typer.Option(None, help="Exit after this many jobs (default: run on)."),
) -> None:
    """Claim and run jobs until SIGTERM (one worker per GPU)."""
    from regrasp.platform.settings import load_settings
    from services.trainer.worker import run_worker

    run_worker(
        load_settings(),
        worker_id=worker_id,
        poll_interval=poll_interval,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        kinds=kind or None,
        device=device,
        max_jobs=max_jobs,
    )


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run(cli)


if __name__ == "__main__":
    main()
