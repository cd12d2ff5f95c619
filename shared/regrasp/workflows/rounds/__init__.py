"""Refinement rounds: train, predict, flag, review, apply — a persisted state machine.

- `machine`: the states and one idempotent step per state (`advance`), plus the API's
  requests (`create_round`, `cancel_round`, `request_apply`, `resume_round`);
- `predicting`: chunked, concurrent fan-out to the inference replicas; flag and priority;
- `runner`: the background driver with per-round locks, safe with several replicas;
- `describe`: the words a round is summarised in (console and review UI).

The round's options and its apply step are `regrasp.refine.rounds`. Import the submodule
you need; this package imports nothing on its own.
"""
