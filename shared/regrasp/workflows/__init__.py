"""Long-running work driven in the background: refinement rounds, benchmark campaigns, imports.

- `rounds`: the round's state machine (`machine`: one idempotent step per state), the
  fan-out to inference replicas (`predicting`), the background driver (`runner`) and the
  words that describe a round on the console and in the UI (`describe`);
- `campaigns`: a campaign's passes over its runs (`machine`) and its driver (`runner`);
- `imports`: the driver that runs queued dataset imports (the work is `regrasp.data.ingest`);
- `engine`: what they share (the polled runner, the retry streak, submitting a job once);
- `retrying`: the retry streak of a workflow whose service could not be reached.

They talk to the trainer and inference services through `regrasp.clients`.
"""
