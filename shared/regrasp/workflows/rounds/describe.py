"""A round in words for people: its true state, its training progress, what applying changes.

Plain functions over the API's schemas, shared by the console (`regrasp up`, `regrasp
round status|apply`) and the review UI's pages, so every place states a round the same way;
and `ProgressLines`, which says a waiting round's news on a console, a line at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from regrasp.api.rounds import ApplyPreviewPublic, RoundPublic, TrainingProgress

__all__ = ["ProgressLines", "apply_summary", "duration", "round_summary", "training_line"]

#: States a console waits through; the state it waits for is the caller's to announce.
WAITING_STATES = ("created", "training", "predicting")


def round_summary(rnd: RoundPublic) -> str:
    """One line with the round's true state, e.g. "round 1 is reviewing: 200 flagged
    images, 12 of 200 decided" or "round 1 is training: epoch 3 of 10, loss 0.0123, ETA 4 min".
    """
    head = f"round {rnd.id} is {rnd.state}"
    c = rnd.counts
    if rnd.state == "created":
        return f"round {rnd.id} is starting"
    if rnd.state == "training":
        lines = [training_line(t) for t in rnd.training]
        return f"{head}: {'; '.join(lines)}" if lines else f"{head}: waiting for a trainer worker"
    if rnd.state == "predicting":
        return f"{head}: {c.images_predicted} images predicted so far"
    if rnd.state == "reviewing":
        made = "" if c.items >= c.flagged else f" (review queue being made: {c.items} ready)"
        return (
            f"{head}: {c.flagged} flagged images{made}, {c.decided} of {c.items} decided"
            if c.items
            else f"{head}: {c.flagged} flagged images{made}"
        )
    if rnd.state == "done":
        return f"{head}: version {rnd.result_version} made from v{rnd.base_version}"
    if rnd.state == "failed":
        return f"{head}" + (f": {rnd.error}" if rnd.error else "")
    return head


class ProgressLines:
    """`wait_round`'s `on_progress` for a console: one `round_summary` line when the round
    moves on (a state, or its training job's phase), and while it trains at most one
    every `every` seconds. A training round takes minutes on a CPU; without these lines
    the console's last word stays "waiting for a trainer worker" long after a worker took
    the job, and with a line per poll the console would scroll away.

    `shown` is the round as the screen already states it (the `regrasp up` frame): its
    line is not repeated.
    Lines stop once the round leaves the states one waits through: its outcome is the
    caller's to say, once.
    """

    def __init__(
        self,
        say: Callable[[str], None],
        *,
        every: float = 60.0,
        shown: RoundPublic | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say, self._every, self._clock = say, every, clock
        self._step = _step(shown) if shown is not None else None
        self._line = round_summary(shown) if shown is not None else None
        self._at = clock()

    def __call__(self, rnd: RoundPublic) -> None:
        if rnd.state not in WAITING_STATES:
            return
        line, step, now = round_summary(rnd), _step(rnd), self._clock()
        if step == self._step and (line == self._line or now - self._at < self._every):
            return
        self._say(line)
        self._step, self._line, self._at = step, line, now


def _step(rnd: RoundPublic) -> tuple[str, ...]:
    """What a round is doing, without its numbers: a change here is news."""
    return (rnd.state, *(f"{t.job_id}:{t.state}:{t.phase}" for t in rnd.training))


def training_line(t: TrainingProgress) -> str:
    """The job's progress, e.g. "epoch 3 of 10, loss 0.0123, ETA 4 min" (or its phase
    before it trains: "job 7 cache (2%)")."""
    if t.state == "queued":
        return f"job {t.job_id} queued for a worker"
    if t.state in ("succeeded", "failed", "cancelled"):
        return f"job {t.job_id} {t.state}"
    if t.phase != "train" or t.epoch is None:
        return f"job {t.job_id} {t.phase or 'starting'} ({t.progress:.0%})"
    parts = [f"epoch {t.epoch} of {t.epochs}" if t.epochs else f"epoch {t.epoch}"]
    if t.loss is not None:
        parts.append(f"loss {t.loss:.4g}")
    if t.eta_seconds is not None:
        parts.append(f"ETA {duration(t.eta_seconds)}")
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """Seconds for people: "45 s", "4 min", "2 h 05 min"."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def apply_summary(p: ApplyPreviewPublic) -> str:
    """What applying changes, in one sentence: "v0 → next version: 3 images removed (42
    labels with them), 5 grasps added, 2 removed by fixes; 12 of 12 items decided"."""
    text = (
        f"v{p.base_version} → next version: {p.images_removed} images removed "
        f"({p.grasps_removed_with_images} labels with them), {p.grasps_added} grasps added, "
        f"{p.grasps_removed} removed by fixes; {p.decided} of {p.items} items decided"
    )
    if p.undecided:
        text += f" ({p.undecided} undecided count as true negatives)"
    return text
