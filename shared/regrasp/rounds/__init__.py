"""Refinement rounds: train, predict, flag, review, apply — a persisted state machine.

- `config`: `RoundConfig`, the options of a round (stored on the `rounds` row);
- `machine`: the states and one idempotent step per state (`advance`), plus the API's
  requests (`create_round`, `cancel_round`, `request_apply`, `resume_round`);
- `predicting`: chunked, concurrent fan-out to the inference replicas; flag and priority;
- `applying`: final review decisions → ChangeSet → version n + 1, exactly once;
- `runner`: the background driver with per-round locks, safe with several replicas.

Import the submodule you need; this package imports nothing on its own.
"""
