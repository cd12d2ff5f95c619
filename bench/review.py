"""Benchmark of the review loop over HTTP against a real orchestrator on PostgreSQL.

1. Queue round trips, saturated: 1, 10 and 50 concurrent annotators (one thread and one
   client each) claim the next item and decide it, with no pause, until the round is
   empty. Reports p50/p95 of one claim + decide pair, decisions/s with the ratio of each
   throughput to the single annotator's (the baseline, run in the same process), and the
   orchestrator's own CPU time per decision (user + system of its process and its worker
   processes, read with psutil once the annotators have logged in and again at the end:
   the server's cost of the claims and decisions, not the clients' nor the logins').
   With `--workers 1,2` the whole part runs once per number of orchestrator processes,
   side by side.
1b. With think time (`--think 1,5`): 50 annotators who each look at every item for a time
   drawn from a seeded uniform distribution before deciding, like people, for `--window`
   seconds. The latency a person feels: p50/p95 of claim + decide (looking excluded).
2. Time to the next image in the review UI's session logic (`ReviewSession`): from the
   decision key press to the next item's overlay ready to show, with prefetch against
   without (the baseline), on 1024² synthetic RGB-D images. The annotator's looking time
   is modelled as "until the prefetch is done" (people look for seconds; it takes less).
   `--images 0` leaves this part out.

The orchestrator runs without its access log, as deployed (development mode logs every
request). The machine's load average is sampled during the run and recorded with the
results: on a shared machine CPU and latency figures compare only at a similar load, so
compare code side by side with `--baseline` (the same command, run just before, on the
other code).

Run: `python bench/review.py [--database-url URL] [--items 1500] [--images 24]
[--workers 1] [--think 1,5 --window 40] [--json out.json] [--baseline main.json]`.
It creates and drops its own database `regrasp_bench_review` on the server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regrasp.api.accounts import UserCreate  # noqa: E402
from regrasp.clients.orchestrator import OrchestratorClient  # noqa: E402
from regrasp.platform.store.db import migrations  # noqa: E402
from regrasp.platform.store.db.engine import make_engine, session_scope  # noqa: E402
from services.review_ui.session import ReviewSession  # noqa: E402
from tests.harness.annotators import annotate  # noqa: E402
from tests.harness.postgres import DEFAULT_SERVER, scratch_database  # noqa: E402
from tests.harness.processes import start_orchestrator  # noqa: E402
from tests.harness.seeders import bare_dataset, import_synthetic, seed_round  # noqa: E402

BENCH_DB = "regrasp_bench_review"
ADMIN = ("lead", "lead-password-1")
PASSWORD = "annotator-password"
THINKERS = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help="PostgreSQL server.")
    parser.add_argument("--items", type=int, default=1500, help="Review items per round.")
    parser.add_argument("--images", type=int, default=24, help="1024² images for part 2.")
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--workers", default="1", help="Orchestrator processes, e.g. 1,2.")
    parser.add_argument("--think", default="", help="Think time lo,hi in seconds (part 1b).")
    parser.add_argument("--window", type=float, default=40.0, help="Seconds of part 1b.")
    parser.add_argument("--json", type=Path, help="Write the results here.")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="A JSON this script wrote for other code (e.g. main) with the same options, "
        "run just before on this machine: prints and records each figure's ratio to it.",
    )
    args = parser.parse_args()

    load = LoadAverage()
    with (
        scratch_database(args.database_url, BENCH_DB) as url,
        tempfile.TemporaryDirectory(prefix="regrasp-bench-review-") as tmp,
        load,
    ):
        results = _run(url, Path(tmp), args)
    results["command"] = " ".join(["python", "bench/review.py", *sys.argv[1:]])
    results["load_average"] = load.summary()
    results["cpu_count"] = os.cpu_count()
    print(f"load average (1 min) during the run: {load.summary()}")
    if args.baseline:
        results["vs_baseline"] = _vs_baseline(results, json.loads(args.baseline.read_text()))
        results["baseline"] = str(args.baseline)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


#: The figures compared with a baseline run: lower is better for all but decisions/s.
_COMPARED = ("decisions_per_s", "p50_ms", "p95_ms", "server_cpu_ms_per_decision")


def _vs_baseline(results: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Ratio this run / baseline of every figure both runs have, printed as they go."""
    ratios: dict[str, float] = {}
    print("\nvs baseline (this run / baseline):")
    rows = [
        (f"saturated {w} process(es), {n} annotators", row, baseline["saturated"][w][n])
        for w, levels in results["saturated"].items()
        for n, row in levels.items()
        if n in baseline.get("saturated", {}).get(w, {})
    ] + [
        (f"think time, {w} process(es)", row, baseline["think"][w])
        for w, row in results.get("think", {}).items()
        if w in baseline.get("think", {})
    ]
    for name, row, base in rows:
        parts = []
        for key in _COMPARED:
            ratio = row[key] / base[key]
            ratios[f"{name}: {key}"] = round(ratio, 2)
            parts.append(f"{key} {row[key]} vs {base[key]} (x{ratio:.2f})")
        print(f"  {name}: " + "; ".join(parts))
    return ratios


class LoadAverage:
    """The machine's 1-minute load average, sampled every 5 s while the block runs: the
    run's CPU figures are only comparable with others taken under a similar load."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> LoadAverage:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every):
                return

    def summary(self) -> dict[str, float]:
        a = np.asarray(self.samples or [os.getloadavg()[0]])
        return {
            "min": round(float(a.min()), 2),
            "mean": round(float(a.mean()), 2),
            "max": round(float(a.max()), 2),
        }


def _server_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of the orchestrator and its worker processes so far."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _run(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    levels = [int(x) for x in args.concurrency.split(",")]
    out: dict[str, object] = {"saturated": {}, "think": {}}
    migrations.upgrade(url)
    engine = make_engine(url)
    users_made = 0
    seed = 0
    with session_scope(engine) as session:
        dataset = bare_dataset(session, name="bench-queue", images=args.items)
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            orchestrator = start_orchestrator(
                database_url=url,
                store_url=f"file://{tmp / 'objects'}",
                data_dir=tmp / "data",
                admin=ADMIN,
                # As deployed: no access log line per request (development logs them).
                extra_env={
                    "REGRASP_ORCHESTRATOR_WORKERS": str(workers),
                    "REGRASP_ACCESS_LOG": "false",
                },
            )
            server = psutil.Process(orchestrator.process.pid)
            try:
                with OrchestratorClient(orchestrator.url) as api:
                    api.login(*ADMIN)
                    need = max([*levels, THINKERS if args.think else 0])
                    for k in range(users_made, need):
                        api.create_user(UserCreate(username=f"annotator{k}", password=PASSWORD))
                    users_made = max(users_made, need)
                print(f"orchestrator {orchestrator.url}: {workers} process(es), PostgreSQL")
                print("\n1. claim + decide over HTTP, saturated (one thread per annotator)")
                rows = {}
                baseline = None
                for n in levels:
                    seed += 1
                    with session_scope(engine) as session:
                        round_id = seed_round(session, dataset_id=dataset, seed=seed)
                    users = [(f"annotator{k}", PASSWORD) for k in range(n)]
                    cpu0 = [0.0]  # read once everyone has logged in (password hashing)
                    run = annotate(
                        orchestrator.url,
                        round_id,
                        users,
                        before_start=lambda c=cpu0, s=server: c.__setitem__(0, _server_cpu(s)),
                    )
                    cpu = _server_cpu(server) - cpu0[0]
                    if run.failures or run.server_errors:
                        raise SystemExit(f"annotators failed: {run.failures[:3]} {run.statuses}")
                    rate = run.rate
                    baseline = baseline or rate
                    p50, p95 = np.percentile(run.pairs, [50, 95]) * 1000
                    cpu_ms = 1000 * cpu / len(run.decided)
                    rows[str(n)] = {
                        "decisions": len(run.decided),
                        "decisions_per_s": round(rate, 1),
                        "p50_ms": round(float(p50), 1),
                        "p95_ms": round(float(p95), 1),
                        "server_cpu_ms_per_decision": round(cpu_ms, 2),
                    }
                    print(
                        f"  {n:3d} annotators: {len(run.decided)} decisions in {run.wall:.1f} s"
                        f" = {rate:7.1f} decisions/s "
                        f"(x{rate / baseline:.2f} of {levels[0]} annotator(s)); "
                        f"claim+decide p50 {p50:.1f} ms, p95 {p95:.1f} ms; "
                        f"server CPU {cpu_ms:.1f} ms/decision"
                    )
                out["saturated"][str(workers)] = rows  # type: ignore[index]
                if args.think:
                    out["think"][str(workers)] = _think(engine, dataset, orchestrator, server, args)  # type: ignore[index]
            finally:
                orchestrator.stop()
        sat = out["saturated"]
        assert isinstance(sat, dict)
        if len(sat) > 1:
            top = str(max(levels))
            first, *others = sat
            for w in others:
                ratio = sat[w][top]["decisions_per_s"] / sat[first][top]["decisions_per_s"]
                out[f"saturated_ratio_{w}_over_{first}_processes"] = round(ratio, 2)
                print(f"  {top} annotators, {w} vs {first} processes: x{ratio:.2f} decisions/s")
        if args.images:
            out["next_image"] = _part2(url, tmp, engine, args)
    finally:
        engine.dispose()
    return out


def _think(engine, dataset, orchestrator, server, args) -> dict[str, float]:  # type: ignore[no-untyped-def]
    lo, hi = (float(x) for x in args.think.split(","))
    with session_scope(engine) as session:
        round_id = seed_round(session, dataset_id=dataset, seed=999)
    users = [(f"annotator{k}", PASSWORD) for k in range(THINKERS)]
    cpu0 = [0.0]  # read once everyone has logged in (password hashing)
    run = annotate(
        orchestrator.url,
        round_id,
        users,
        think_seconds=(lo, hi),
        seed=7,
        stop_after=args.window,
        before_start=lambda: cpu0.__setitem__(0, _server_cpu(server)),
    )
    cpu = _server_cpu(server) - cpu0[0]
    if run.failures or run.server_errors:
        raise SystemExit(f"annotators failed: {run.failures[:3]} {run.statuses}")
    p50, p95 = np.percentile(run.pairs, [50, 95]) * 1000
    row = {
        "annotators": THINKERS,
        "think_seconds": [lo, hi],
        "decisions": len(run.decided),
        "decisions_per_s": round(run.rate, 1),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "server_cpu_ms_per_decision": round(1000 * cpu / len(run.decided), 2),
    }
    print(
        f"\n1b. {THINKERS} annotators thinking {lo:g}-{hi:g} s: {row['decisions']} decisions, "
        f"claim+decide p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms; "
        f"server CPU {row['server_cpu_ms_per_decision']} ms/decision"
    )
    return row


def _part2(url: str, tmp: Path, engine, args: argparse.Namespace) -> dict[str, float]:  # type: ignore[no-untyped-def]
    orchestrator = start_orchestrator(
        database_url=url, store_url=f"file://{tmp / 'objects'}", data_dir=tmp / "data", admin=ADMIN
    )
    try:
        with OrchestratorClient(orchestrator.url) as api:
            api.login(*ADMIN)
            print(
                f"\n2. decision -> next image ready in ReviewSession ({args.images} 1024² images)"
            )
            images = import_synthetic(api, name="bench-images", images=args.images, size=1024)
            api.create_user(UserCreate(username="viewer", password=PASSWORD))
            viewer = OrchestratorClient(orchestrator.url)
            viewer.login("viewer", PASSWORD)
            results = {}
            for prefetch in (False, True):
                with session_scope(engine) as session:
                    round_id = seed_round(session, dataset_id=images, seed=int(prefetch))
                results[prefetch] = _next_image_times(viewer, round_id, prefetch=prefetch)
            base = np.median(results[False])
            fast = np.median(results[True])
            for prefetch in (False, True):
                t = np.asarray(results[prefetch]) * 1000
                name = "with prefetch   " if prefetch else "without prefetch"
                print(
                    f"  {name}: median {np.median(t):6.1f} ms, p95 "
                    f"{np.percentile(t, 95):6.1f} ms over {len(t)} decisions"
                )
            print(f"  ratio (without / with prefetch, medians): x{base / fast:.1f}")
            return {
                "without_prefetch_median_ms": round(float(base) * 1000, 1),
                "with_prefetch_median_ms": round(float(fast) * 1000, 1),
            }
    finally:
        orchestrator.stop()


def _next_image_times(api: OrchestratorClient, round_id: int, *, prefetch: bool) -> list[float]:
    session = ReviewSession(api, round_id, prefetch=prefetch, size=768)
    times = []
    try:
        session.start()
        session.render()
        while session.current is not None:
            session.wait_prefetched(timeout=60)  # the annotator looks at the image
            t0 = time.perf_counter()
            session.decide("true_negative")
            if session.current is not None:
                session.render()  # the next overlay, ready to show
                times.append(time.perf_counter() - t0)
    finally:
        session.close()
    return times


if __name__ == "__main__":
    main()
