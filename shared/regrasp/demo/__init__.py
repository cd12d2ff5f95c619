"""The whole loop on one machine: the embedded stack of `regrasp up`, and `regrasp demo`.

- `stack`: the four services and a trainer worker as local processes (`LocalStack`),
  their generated secrets and the first admin;
- `loop`: the demo's synthetic data and the unattended refinement loop through the
  services' APIs (`bootstrap_demo`, `run_rounds`);
- `report`: its rows as a table and charts.
"""

from regrasp.demo.loop import (
    DEMO_CORRUPT_FRACTION,
    DEMO_CORRUPTION_KINDS,
    DEMO_ROUND,
    DEMO_TRAIN,
    RoundRow,
    SyntheticSpec,
    bootstrap_demo,
    import_synthetic,
    review_round,
    run_rounds,
    synthetic_truth,
)
from regrasp.demo.report import round_table, write_charts
from regrasp.demo.stack import LocalStack, StackPorts, ensure_admin, free_ports, local_stack

__all__ = [
    "DEMO_CORRUPTION_KINDS",
    "DEMO_CORRUPT_FRACTION",
    "DEMO_ROUND",
    "DEMO_TRAIN",
    "LocalStack",
    "RoundRow",
    "StackPorts",
    "SyntheticSpec",
    "bootstrap_demo",
    "ensure_admin",
    "free_ports",
    "import_synthetic",
    "local_stack",
    "review_round",
    "round_table",
    "run_rounds",
    "synthetic_truth",
    "write_charts",
]
