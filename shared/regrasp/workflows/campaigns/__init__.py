"""Benchmark campaigns (the paper's Table I): networks × dataset versions, one test split.

- `machine`: create / cancel / resume, and `advance`, one idempotent pass that submits the
  trainer jobs (every train job at once, so they run in parallel on as many workers as
  exist), follows them and records each model's accuracy and training loss;
- `runner`: the orchestrator's background driver, with a per-campaign lock.

The options and the report are `regrasp.refine.campaigns`. Import the submodule you need.
"""
