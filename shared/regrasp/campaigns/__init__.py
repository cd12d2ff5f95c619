"""Benchmark campaigns (the paper's Table I): networks × dataset versions, one test split.

- `config`: `CampaignConfig`, what `POST /campaigns` accepts besides the dataset;
- `machine`: create / cancel / resume, and `advance`, one idempotent pass that submits the
  trainer jobs (every train job at once, so they run in parallel on as many workers as
  exist), follows them and records each model's accuracy and training loss;
- `runner`: the orchestrator's background driver, with a per-campaign lock;
- `report`: the accuracy table (best per version marked) and the paper's figures 4–8 as
  PNG and CSV, from the stored metrics.

Import the submodule you need; this package imports nothing on its own.
"""
