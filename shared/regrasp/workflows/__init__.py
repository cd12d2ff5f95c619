"""Long-running work that calls other services: refinement rounds and benchmark campaigns.

- `rounds`: the round's state machine (`machine`: one idempotent step per state), the
  fan-out to inference replicas (`predicting`), the background driver (`runner`) and the
  words that describe a round on the console and in the UI (`describe`);
- `campaigns`: a campaign's passes over its runs (`machine`) and its driver (`runner`);
- `retrying`: the retry streak of a workflow whose service could not be reached.

They talk to the trainer and inference services through `regrasp.clients`.
"""
