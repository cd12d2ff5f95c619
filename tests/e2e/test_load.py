"""50 annotators over HTTP while another round's predictions are being stored.

The scenario of `bench/load.py`, run once and checked (`tests.harness.load`): the
orchestrator and a BentoML inference service as real processes on PostgreSQL; 50
annotators (one thread and one client each) empty a 2,000-item review round in
single-review mode while a second round on the same orchestrator is in `predicting`, its
predictions stored by the orchestrator's own round runner from the inference process.

Checked: every item decided exactly once, the database's standing reviews are exactly the
decisions the clients got a 2xx for, no 5xx and no 4xx at all; prediction rows were
written while the annotators worked, and the predicting round ends with one prediction per
image, none missing, none twice. Nothing is timed.
"""

from __future__ import annotations

import pytest

from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import session_scope
from tests.harness.annotators import standing_reviews
from tests.harness.load import LoadSpec, check_predictions, run_phase
from tests.harness.stack import LoadStack

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

SPEC = LoadSpec(annotators=50, items=2000, images=200, image_size=64, input_size=64, chunk_size=2)


def test_fifty_annotators_decide_while_a_round_predicts(postgres_url, tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_url,
        object_store_url=f"file://{tmp_path / 'objects'}",
    )
    with LoadStack(settings, env={"OMP_NUM_THREADS": "1"}) as stack:
        predicting = stack.predicting_dataset(SPEC)
        phase = run_phase(stack, SPEC, seed=1, predicting=predicting)
        run = phase.run
        assert phase.predicting_round is not None
        final = stack.api.get_round(phase.predicting_round)
        with session_scope(stack.engine) as session:
            kept = standing_reviews(session, phase.review_round)
        predictions = check_predictions(stack, phase.predicting_round)
        crashes = stack.crashes

    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in stack.logs.glob("*.log")
    )
    assert not crashes, (crashes, logs)
    assert not run.failures, (run.failures[:3], logs)
    assert run.server_errors == 0, (run.statuses, logs)  # no 5xx
    assert run.unexpected_4xx == 0, (run.statuses, logs)  # and no 4xx: nothing was replayed
    # Every item decided exactly once, as the clients saw it...
    items = [item for item, _ in run.decided]
    assert len(items) == SPEC.items and len(set(items)) == SPEC.items
    # ...and as the database keeps it: the standing reviews are the 2xx decisions.
    assert set(kept.per_item.values()) == {1} and set(kept.per_item) == set(items)
    assert kept.review_ids == {review for _, review in run.decided}
    assert kept.states == {"decided": SPEC.items}
    # The other round was storing predictions during the annotators' window...
    assert phase.predicted_during > 0, (phase.run.started, phase.samples[:5])
    assert phase.stored_at(phase.run.started) < phase.images
    # ...and finished them: one per image of its version, none twice, none missing.
    assert final.state == "reviewing", (final.state, final.error, logs)
    assert predictions.expected == phase.images == SPEC.images
    assert predictions.rows == predictions.distinct == predictions.expected, predictions
    assert predictions.missing == predictions.extra == 0, predictions
    print(
        f"\n{len(items)} decisions in {run.wall:.1f} s; {phase.predicted_during} of "
        f"{phase.images} predictions stored meanwhile ({phase.overlap_fraction:.0%} of the window)"
    )
