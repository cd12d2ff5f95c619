"""What `regrasp up` and `regrasp round status` say about a round, and `regrasp logs`."""

from __future__ import annotations

from datetime import UTC, datetime

from typer.testing import CliRunner

from regrasp.api.rounds import ApplyPreviewPublic, RoundCounts, RoundPublic, TrainingProgress
from regrasp.cli import app as cli
from regrasp.cli._console import frame
from regrasp.workflows.rounds.describe import (
    ProgressLines,
    apply_summary,
    duration,
    round_summary,
    training_line,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _round(state: str, **values) -> RoundPublic:
    base = dict(
        id=1,
        dataset_id=1,
        base_version=0,
        result_version=None,
        state=state,
        config={},
        model_id=None,
        train_job_id=None,
        error=None,
        created_at=NOW,
        updated_at=NOW,
        finished_at=None,
    )
    return RoundPublic(**{**base, **values})


def test_a_reviewing_round_states_its_flagged_count_not_its_items_so_far():
    rnd = _round("reviewing", counts=RoundCounts(images_predicted=800, flagged=200, items=0))
    assert round_summary(rnd) == (
        "round 1 is reviewing: 200 flagged images (review queue being made: 0 ready)"
    )
    rnd = _round("reviewing", counts=RoundCounts(flagged=200, items=200, decided=12))
    assert round_summary(rnd) == "round 1 is reviewing: 200 flagged images, 12 of 200 decided"


def test_a_training_round_states_epoch_loss_and_eta():
    running = TrainingProgress(
        job_id=7, state="running", phase="train", epoch=3, epochs=10, loss=0.01234, eta_seconds=250
    )
    assert training_line(running) == "epoch 3 of 10, loss 0.01234, ETA 4 min"
    rnd = _round("training", training=[running])
    assert round_summary(rnd) == "round 1 is training: epoch 3 of 10, loss 0.01234, ETA 4 min"
    assert round_summary(_round("training")) == "round 1 is training: waiting for a trainer worker"
    queued = TrainingProgress(job_id=7, state="queued")
    assert training_line(queued) == "job 7 queued for a worker"
    caching = TrainingProgress(job_id=7, state="running", phase="cache", progress=0.02)
    assert training_line(caching) == "job 7 cache (2%)"


def test_progress_lines_say_each_step_once_and_training_at_most_once_a_minute():
    said: list[str] = []
    now = [0.0]
    shown = _round("training")  # the frame's line: not repeated
    lines = ProgressLines(said.append, every=60.0, shown=shown, clock=lambda: now[0])

    def epoch(n: int, eta: float) -> RoundPublic:
        job = TrainingProgress(
            job_id=7, state="running", phase="train", epoch=n, epochs=40, loss=0.5 / n,
            eta_seconds=eta,
        )  # fmt: skip
        return _round("training", training=[job])

    lines(_round("training"))
    assert said == []
    now[0] = 5.0
    lines(_round("training", training=[TrainingProgress(job_id=7, state="queued")]))
    assert said == ["round 1 is training: job 7 queued for a worker"]  # a new step: at once
    now[0] = 10.0
    lines(epoch(1, 300))
    now[0] = 40.0
    lines(epoch(8, 200))  # the same step, 30 s on: quiet
    now[0] = 71.0
    lines(epoch(15, 120))  # a minute on: one line
    lines(epoch(15, 120))
    assert said[1:] == [
        "round 1 is training: epoch 1 of 40, loss 0.5, ETA 5 min",
        "round 1 is training: epoch 15 of 40, loss 0.03333, ETA 2 min",
    ]
    lines(_round("predicting", counts=RoundCounts(images_predicted=50)))
    assert said[-1] == "round 1 is predicting: 50 images predicted so far"
    lines(_round("reviewing", counts=RoundCounts(flagged=111, items=111)))
    lines(_round("failed", error="boom"))
    assert len(said) == 4  # the outcome is the caller's to say, once


def test_durations_and_frames():
    assert [duration(s) for s in (5, 250, 7500)] == ["5 s", "4 min", "2 h 05 min"]
    box = frame(["a", "longer line"], title="up").splitlines()
    assert len({len(line) for line in box}) == 1  # every line as wide as the box
    assert box[0].startswith("┌─ up ") and box[-1].startswith("└")
    assert box[1] == "│ a           │"


def test_apply_summary_says_what_changes():
    preview = ApplyPreviewPublic(
        round_id=1,
        base_version=0,
        items=5,
        decided=4,
        undecided=1,
        decisions={},
        images_removed=1,
        grasps_added=2,
        grasps_removed=1,
        grasps_removed_with_images=3,
        images_before=5,
        grasps_before=15,
        images_after=4,
        grasps_after=13,
    )
    assert apply_summary(preview) == (
        "v0 → next version: 1 images removed (3 labels with them), 2 grasps added, "
        "1 removed by fixes; 4 of 5 items decided (1 undecided count as true negatives)"
    )


def test_logs_tails_a_service_log(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "orchestrator.log").write_text("".join(f"line {i}\n" for i in range(100)))
    r = CliRunner().invoke(cli, ["logs", "orchestrator", "-n", "3", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0 and r.output.splitlines() == ["line 97", "line 98", "line 99"]
    r = CliRunner().invoke(cli, ["logs", "review-ui", "--data-dir", str(tmp_path)])
    assert r.exit_code != 0 and "no log yet" in str(r.exception)
    r = CliRunner().invoke(cli, ["logs", "database", "--data-dir", str(tmp_path)])
    assert r.exit_code != 0 and "unknown service 'database'" in str(r.exception)
