"""A round's run state: what its workflow has done so far, typed, in the `rounds.run` column.

The user's options stay in `rounds.config` (`RoundConfig`); this is the workflow's own
bookkeeping, written by `regrasp.workflows.rounds.machine` and read by the apply step and
the API's view of a round:

- `timings`: per state, when it was first entered and when it was left (ISO strings);
- `units`: the models a round trains (one, or one per fold with out-of-fold flagging):
  the train job submitted for each (with the time the submission was intended, so a
  restart finds it instead of submitting twice) and the model it made;
- `apply`: the apply request (force, by whom, when);
- `failed_in`: the state a failed round failed in (a resume goes back there).

The retry streak of a step is a column of its own (`rounds.retry`), as for campaigns.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from regrasp.platform.clock import utcnow
from regrasp.platform.store.db.tables import Round

__all__ = ["ApplyRequest", "RoundRun", "StepTiming", "TrainingUnit", "load_run", "save_run"]


class _State(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class StepTiming(_State):
    started: str | None = None
    finished: str | None = None


class TrainingUnit(_State):
    """One model the round trains (or, with `model_id` given, uses)."""

    fold: int | None = None
    job_id: int | None = None
    model_id: int | None = None
    intent_at: str | None = Field(
        None, description="When the train job's submission was recorded as intended."
    )
    failed_job_ids: list[int] = Field(
        default_factory=list, description="Jobs set aside after they failed (never reused)."
    )


class ApplyRequest(_State):
    force: bool = False
    by: int | None = None
    at: str | None = None


class RoundRun(_State):
    timings: dict[str, StepTiming] = Field(default_factory=dict)
    units: list[TrainingUnit] = Field(default_factory=list)
    apply: ApplyRequest | None = None
    failed_in: str | None = None

    def entered(self, state: str, *, left: str | None) -> None:
        """Record the move from `left` to `state` now. A state entered again (resume)
        keeps its first start, so its time spans the retries."""
        now = utcnow().isoformat()
        if left is not None and left in self.timings and self.timings[left].finished is None:
            self.timings[left].finished = now
        self.timings[state] = StepTiming(
            started=self.timings.get(state, StepTiming()).started or now
        )

    def finished(self, state: str) -> None:
        """Record that `state` ended now (the last state of a round, which is never left)."""
        timing = self.timings.setdefault(state, StepTiming())
        timing.finished = utcnow().isoformat()


def load_run(rnd: Round) -> RoundRun:
    """The round's run state (empty for a new round)."""
    return RoundRun.model_validate(rnd.run or {})


def save_run(rnd: Round, run: RoundRun) -> None:
    """Store `run` on the round (a new dict: plain JSON columns only notice reassignment)."""
    rnd.run = _dump(run)


def _dump(run: RoundRun) -> dict[str, Any]:
    return run.model_dump(mode="json", exclude_defaults=True)
