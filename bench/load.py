"""Load: 50 annotators over HTTP while another round's predictions are being stored.

The orchestrator and a BentoML inference service run as real processes on PostgreSQL
(launched as `regrasp up` launches them). Two phases on the same stack, side by side:

1. baseline: 50 annotators (one thread and one client each) empty a 2,000-item review
   round, with nothing else running;
2. loaded: the same annotators empty another 2,000-item round while a second round on
   the same orchestrator is in `predicting`: its round runner sends the images of a
   synthetic dataset to the inference service in chunks (64 images, the round default)
   and stores each chunk's predictions (the annotators start once the first is stored).

Prints per phase the p50/p95 of one claim + decide pair and decisions/s, the loaded/baseline
ratios, how many predictions were stored during the annotators' window (and for what share
of it), and the consistency checks of `tests/e2e/test_load.py` (every item decided exactly
once, the standing reviews equal the 2xx decisions, no 5xx, no 4xx). The scenario is
`tests/harness/load.py`, shared with that test.

Run: `python bench/load.py [--database-url URL] [--annotators 50] [--items 2000]
[--images 4000] [--chunk-size 64]`. It creates and drops its own database
`regrasp_bench_load` on the server.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regrasp.platform.settings import Settings  # noqa: E402
from regrasp.platform.store.db.engine import session_scope  # noqa: E402
from tests.harness.annotators import standing_reviews  # noqa: E402
from tests.harness.load import LoadSpec, Phase, check_predictions, run_phase  # noqa: E402
from tests.harness.postgres import DEFAULT_SERVER, scratch_database  # noqa: E402
from tests.harness.stack import LoadStack  # noqa: E402

BENCH_DB = "regrasp_bench_load"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help="PostgreSQL server.")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--items", type=int, default=2000, help="Decisions per phase.")
    parser.add_argument("--images", type=int, default=4000, help="Images of the predicting round.")
    parser.add_argument("--chunk-size", type=int, default=64, help="Images per inference call.")
    args = parser.parse_args()
    spec = LoadSpec(
        annotators=args.annotators, items=args.items, images=args.images, chunk_size=args.chunk_size
    )
    with (
        scratch_database(args.database_url, BENCH_DB) as url,
        tempfile.TemporaryDirectory(prefix="regrasp-bench-load-") as tmp,
    ):
        settings = Settings(
            data_dir=Path(tmp) / "data",
            database_url=url,
            object_store_url=f"file://{Path(tmp) / 'objects'}",
        )
        with LoadStack(settings) as stack:
            print(f"orchestrator {stack.url} + inference on PostgreSQL ({BENCH_DB}); {spec}")
            predicting = stack.predicting_dataset(spec)
            baseline = run_phase(stack, spec, seed=1)
            problems = _check(stack, baseline, spec)
            loaded = run_phase(stack, spec, seed=2, predicting=predicting)
            problems += _check(stack, loaded, spec)
            problems += stack.crashes
        _report(baseline, loaded)
    if problems:
        raise SystemExit("FAILED: " + "; ".join(problems))
    print("checks: every item decided once, standing reviews == 2xx decisions, no 5xx/4xx: ok")


def _check(stack: LoadStack, phase: Phase, spec: LoadSpec) -> list[str]:
    """What `tests/e2e/test_load.py` asserts, as a list of problems (empty: all good)."""
    run, problems = phase.run, []
    items = [item for item, _ in run.decided]
    with session_scope(stack.engine) as session:
        kept = standing_reviews(session, phase.review_round)
    if run.failures:
        problems.append(f"annotators failed: {run.failures[:3]}")
    if run.server_errors or run.unexpected_4xx:
        problems.append(f"error statuses: {dict(run.statuses)}")
    if len(items) != spec.items or len(set(items)) != spec.items:
        problems.append(f"{len(items)} decisions on {len(set(items))} items of {spec.items}")
    if set(kept.per_item.values()) != {1} or kept.review_ids != {r for _, r in run.decided}:
        problems.append("the standing reviews differ from the decisions the clients got")
    if phase.predicting_round is not None:
        check = check_predictions(stack, phase.predicting_round)
        if not check.rows == check.distinct == check.expected or check.missing or check.extra:
            problems.append(f"predictions incomplete or duplicated: {check}")
        if phase.predicted_during <= 0:
            problems.append("no prediction was stored during the annotators' window")
    return problems


def _report(baseline: Phase, loaded: Phase) -> None:
    print(
        f"\n{'phase':<34} {'decisions':>9} {'wall s':>9} {'dec/s':>9} {'p50 ms':>9} {'p95 ms':>9}"
    )
    rows = {}
    for name, phase in (
        ("baseline (nothing else running)", baseline),
        ("while predicting", loaded),
    ):
        run = phase.run
        p50, p95 = np.percentile(run.pairs, [50, 95]) * 1000
        rows[name] = (run.rate, p50, p95)
        print(
            f"{name:<34} {len(run.decided):>9} {run.wall:>9.1f} {run.rate:>9.1f} "
            f"{p50:>9.0f} {p95:>9.0f}"
        )
    (b_rate, b50, b95), (l_rate, l50, l95) = rows.values()
    print(
        f"ratio loaded / baseline: decisions/s x{l_rate / b_rate:.2f}, "
        f"p50 x{l50 / b50:.2f}, p95 x{l95 / b95:.2f}"
    )
    window = loaded.run
    stored = loaded.predicted_during
    print(
        f"predicting round: {stored} of {loaded.images} predictions stored during the "
        f"annotators' window ({stored / window.wall:.1f} images/s), predicting for "
        f"{loaded.overlap_fraction:.0%} of it"
    )


if __name__ == "__main__":
    main()
