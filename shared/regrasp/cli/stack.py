"""`regrasp up` (the embedded stack on one machine) and `regrasp demo` (the unattended loop)."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import typer

from regrasp.cli._app import app
from regrasp.cli._common import PASSWORD_OPTION, TOKEN_OPTION, USER_OPTION, orchestrator_client
from regrasp.platform.errors import RegraspError

if TYPE_CHECKING:
    from regrasp.api.rounds import RoundPublic
    from regrasp.demo import SyntheticSpec

#: The processes `regrasp up` runs; each logs to `<data dir>/logs/<name>.log`.
SERVICES = ("orchestrator", "trainer", "worker", "inference", "review_ui")


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
    size: int = typer.Option(128, min=64, help="Demo dataset: image side, pixels."),
    corrupt_fraction: float = typer.Option(
        None, min=0.0, max=1.0, help="Demo: corrupted fraction (default: the demo's)."
    ),
    device: str = typer.Option(None, help="Trainer worker's torch device (default: auto)."),
    startup_timeout: float = typer.Option(600.0, help="Seconds to wait for healthy services."),
) -> None:
    """Run all four services and a trainer worker here, supervised, until Ctrl-C.

    The services log to files (`regrasp logs SERVICE` tails one); the console gets one
    framed summary once everything is up (URLs, the admin's password on the first run,
    the latest round's real state), a line as round 1 moves on (`ProgressLines`), then
    one line when it is ready for review.
    """
    import os
    import threading
    from pathlib import Path

    from regrasp.cli._console import frame
    from regrasp.clients.orchestrator import OrchestratorClient
    from regrasp.demo import StackPorts, bootstrap_demo, ensure_admin, local_stack
    from regrasp.platform.settings import load_settings
    from regrasp.platform.supervisor import LogFiles, Supervisor, stop_on_signals
    from regrasp.workflows.rounds.describe import ProgressLines, round_summary

    s = load_settings(**({"data_dir": Path(data_dir)} if data_dir else {}))
    ports = StackPorts(orchestrator_port, trainer_port, inference_port, ui_port)
    stack = local_stack(s, ports=ports, base_env=os.environ)
    password = ensure_admin(
        s.database_url,
        username=s.admin_username,
        password=s.admin_password.get_secret_value() if s.admin_password else None,
        mode=s.mode,
    )
    logs = stack.data_dir / "logs"
    sink = LogFiles(logs)
    say = lambda m: typer.echo(f"regrasp: {m}")  # noqa: E731
    say(f"data in {stack.data_dir} ({s.database_url.split(':', 1)[0]}); service logs in {logs}")
    say("starting the services (this takes a minute; `regrasp logs SERVICE` shows one) …")
    supervisor = Supervisor(
        stack.specs(worker_device=device),
        output=sink,
        on_crash=lambda c: say(
            f"{c.name} exited with {c.returncode}; restarting (log {logs / (c.name + '.log')})"
        ),
    )

    def summary(api: OrchestratorClient | None, latest: RoundPublic | None = None) -> str:
        lines = [
            f"review UI          {stack.url('review_ui')}",
            f"orchestrator API   {stack.url('orchestrator')}/docs",
            f"inference          {stack.url('inference')}  (docs {stack.url('inference')}/docs)",
            f"trainer API        {stack.url('trainer')}/docs",
            f"logs               {logs}  (regrasp logs SERVICE)",
        ]
        if password is not None and s.admin_password is None:
            lines.append(
                f"admin              {s.admin_username!r} / {password}  "
                "(generated; shown once, stored only as a hash)"
            )
        elif password is not None:
            lines.append(f"admin              {s.admin_username!r} (REGRASP_ADMIN_PASSWORD)")
        if latest is None and api is not None:
            latest = next(iter(api.list_rounds()), None)
        lines.append(f"state              {round_summary(latest) if latest else 'no round yet'}")
        lines.append("Ctrl-C stops everything.")
        return frame(lines, title="regrasp is up")

    def bootstrap() -> None:
        try:
            with OrchestratorClient(stack.url("orchestrator"), timeout=120.0) as api:
                api.use_credential(stack.service_key)
                rnd = None
                if demo_data:
                    spec = _demo_spec(images, size, corrupt_fraction=corrupt_fraction)
                    rnd = bootstrap_demo(api, spec=spec, on_progress=say)
                shown = api.get_round(rnd.id) if rnd is not None else None
                typer.echo(summary(api, shown))
                if rnd is None:
                    return
                rnd = api.wait_round(
                    rnd.id,
                    timeout=24 * 3600.0,
                    poll=2.0,
                    on_progress=ProgressLines(say, shown=shown),
                )
                rnd = _queue_made(api, rnd)
                say(f"{round_summary(rnd)}; review at {stack.url('review_ui')}")
        except RegraspError as exc:
            typer.echo(f"regrasp: demo data not set up: {exc}", err=True)
            typer.echo(summary(None))

    try:
        with stop_on_signals() as stop, supervisor:
            supervisor.wait_healthy(timeout=startup_timeout, cancel=stop)
            threading.Thread(target=bootstrap, name="bootstrap", daemon=True).start()
            stop.wait()
            say("stopping (Ctrl-C again to force)")
    finally:
        sink.close()


def _queue_made(api, rnd, *, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    """The round once its review queue holds every flagged image (it is made just after
    the round enters reviewing), so the count printed is the real one."""
    import time

    deadline = time.monotonic() + timeout
    while rnd.state == "reviewing" and rnd.counts.items < rnd.counts.flagged:
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
        rnd = api.get_round(rnd.id)
    return rnd


@app.command()
def logs(
    service: str = typer.Argument(..., help=f"One of {', '.join(SERVICES)}."),
    lines: int = typer.Option(50, "--lines", "-n", min=0, help="Last lines to show."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    data_dir: str = typer.Option(
        None, help="The data folder `regrasp up` used (default REGRASP_DATA_DIR)."
    ),
) -> None:
    """Show the end of a service's log written by `regrasp up` (like `tail`)."""
    import time
    from collections import deque
    from pathlib import Path

    from regrasp.platform.errors import InvalidInput, NotFound
    from regrasp.platform.settings import load_settings

    name = service.replace("-", "_")
    if name not in SERVICES:
        raise InvalidInput(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    folder = Path(data_dir) if data_dir else load_settings().data_dir
    path = folder / "logs" / f"{name}.log"
    if not path.is_file():
        raise NotFound(f"{path}: no log yet (has `regrasp up` run with this data folder?)")
    with path.open(errors="replace") as log:
        for line in deque(log, maxlen=lines) if lines else ():
            typer.echo(line.rstrip("\n"))
        while follow:
            line = log.readline()
            if line:
                typer.echo(line.rstrip("\n"))
            else:
                time.sleep(0.5)


@app.command()
def demo(
    url: str = typer.Option(
        None, "--url", help="Use the services running there instead of starting them."
    ),
    trainer_url: str = typer.Option(None, help="Trainer URL with --url (default settings)."),
    token: str = TOKEN_OPTION,
    username: str = USER_OPTION,
    password: str = PASSWORD_OPTION,
    data_dir: str = typer.Option(
        None, help="Data folder of the services started here (default: a temporary one)."
    ),
    output: str = typer.Option("regrasp-demo", "--output", "-o", help="Folder for the charts."),
    rounds: int = typer.Option(3, min=1, help="Rounds to run."),
    images: int = typer.Option(200, min=10, help="Synthetic images."),
    size: int = typer.Option(128, min=64, help="Synthetic image side, pixels."),
    corrupt_fraction: float = typer.Option(
        None, min=0.0, max=1.0, help="Corrupted fraction (default: the demo's)."
    ),
    corruption_kinds: str = typer.Option(
        None,
        help="How corrupted images are corrupted, spread evenly (comma-separated: "
        "one_orientation, part_only, wrong_action, stray_rectangles; default: the demo's).",
    ),
    seed: int = typer.Option(0, help="Generator seed."),
    error_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Simulated reviewer errors."),
    draw: int = typer.Option(
        3,
        min=0,
        max=50,
        help="Missing grasps the simulated reviewer draws per image, as a person drags them "
        "on the review screen (0: it only accepts predictions).",
    ),
    flag: str = typer.Option(
        None, help="Which images a round flags: 'score' or 'paper' (default: the demo's)."
    ),
    top_k: int = typer.Option(None, min=1, max=100, help="Predictions kept per image."),
    epochs: int = typer.Option(None, help="Epochs per round (default 4)."),
    input_size: int = typer.Option(None, help="Network input side (default 128)."),
    clean_eval: bool = typer.Option(
        True, help="Also score each model on clean labels (true accuracy)."
    ),
    eval_images: int = typer.Option(
        400,
        min=0,
        help="Clean images of unseen objects every model is scored on "
        "(0: the clean twin's test split instead).",
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

    from regrasp.api.accounts import UserCreate
    from regrasp.clients.orchestrator import OrchestratorClient
    from regrasp.clients.trainer import TrainerClient
    from regrasp.data.synthetic.reviewer import SimulatedReviewer
    from regrasp.demo import (
        DEMO_ROUND,
        DEMO_TRAIN,
        StackPorts,
        ensure_admin,
        free_ports,
        import_synthetic,
        local_stack,
        round_table,
        run_rounds,
        synthetic_truth,
        write_charts,
    )
    from regrasp.platform.settings import load_settings
    from regrasp.platform.supervisor import LogFiles, Supervisor, interrupt_on_sigterm

    # Wide enough for the per-round table even when output goes to a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 200)
    started = time.monotonic()
    train = dict(DEMO_TRAIN)
    if epochs is not None:
        train["epochs"] = epochs
    if input_size is not None:
        train["input_size"] = input_size
    round_options = dict(DEMO_ROUND)
    if flag is not None:
        if flag not in ("score", "paper"):
            raise typer.BadParameter(f"--flag must be 'score' or 'paper', not {flag!r}")
        round_options["flag"] = flag
    if top_k is not None:
        round_options["top_k"] = top_k
    spec = _demo_spec(
        images,
        size,
        seed=seed,
        corrupt_fraction=corrupt_fraction,
        corruption_kinds=corruption_kinds,
    )
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    with interrupt_on_sigterm(), ExitStack() as cleanup:
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
                mode=s.mode,
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
            admin = cleanup.enter_context(orchestrator_client(url, token, username, password))
            trainer = cleanup.enter_context(
                TrainerClient(
                    trainer_url or s.trainer_url, credential=admin.credential, timeout=60.0
                )
            )
        what = (
            f"{spec.images} synthetic images of {spec.size}² px, "
            f"{spec.corrupt_fraction:.0%} corrupted ({', '.join(spec.corruption_kinds)})"
        )
        if clean_eval and eval_images:
            what += f", and {eval_images} clean images of unseen objects to score every model on"
        elif clean_eval:
            what += " (and its clean twin)"
        console.print(f"importing {name!r}: {what}")
        dataset_id = import_synthetic(admin, name=name, spec=spec)
        clean_id, clean_split = None, "test"
        if clean_eval and eval_images:
            held_out = spec.held_out(eval_images)
            clean_id = import_synthetic(
                admin,
                name=f"{name}-heldout",
                spec=held_out,
                description="clean held-out test set of the demo",
            )
            clean_split = "all"
        elif clean_eval:
            clean_id = import_synthetic(admin, name=f"{name}-clean", spec=spec, clean=True)
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
            f"{train['epochs']} epochs; flag '{round_options['flag']}', top "
            f"{round_options['top_k']} predictions per image; simulated reviewer error rate "
            f"{error_rate:.0%}, drawing up to {draw} missing grasps an image"
        )
        rows = run_rounds(
            admin,
            reviewer_api,
            trainer,
            dataset_id=dataset_id,
            truth=truth,
            reviewer=SimulatedReviewer(error_rate=error_rate, seed=seed, draw=draw),
            rounds=rounds,
            train=train,
            round_options=round_options,
            clean_dataset_id=clean_id,
            clean_split=clean_split,
            on_status=lambda m: console.print(f"  {m}", style="dim"),
        )
        console.print(round_table(rows, title=f"{name}: {rounds} rounds"))
        written = write_charts(rows, Path(output))
        console.print(f"charts: {', '.join(str(p) for p in written)}")
        console.print(f"demo took {time.monotonic() - started:.0f} s")
        console.print(
            "how this compares at scale (3,000 images, every variant, several seeds): "
            "docs/benchmarks.md, section 'Efficacy'"
        )


def _demo_spec(
    images: int,
    size: int,
    *,
    seed: int = 0,
    corrupt_fraction: float | None = None,
    corruption_kinds: str | None = None,
) -> SyntheticSpec:
    """The demo data `regrasp up` and `regrasp demo` import: `SyntheticSpec`'s defaults
    unless an option says otherwise (`corruption_kinds`: comma-separated, checked here)."""
    from regrasp.data.synthetic.corruption import KINDS
    from regrasp.demo import SyntheticSpec

    spec = SyntheticSpec(images=images, size=size, seed=seed)
    if corrupt_fraction is not None:
        spec = replace(spec, corrupt_fraction=corrupt_fraction)
    if corruption_kinds is not None:
        kinds = tuple(k.strip() for k in corruption_kinds.split(",") if k.strip())
        unknown = sorted(set(kinds) - set(KINDS))
        if not kinds or unknown:
            raise typer.BadParameter(
                f"--corruption-kinds: unknown {unknown or 'none given'}; known: {', '.join(KINDS)}"
            )
        spec = replace(spec, corruption_kinds=kinds)
    return spec
