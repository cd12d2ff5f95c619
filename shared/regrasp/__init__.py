"""Regrasp: human-in-the-loop refinement of robotic grasp datasets.

The library every service imports, in layers that import downwards only (the map is
`shared/regrasp/README.md`): `platform` (settings, storage, accounts), `grasp` (geometry,
no I/O), `data`, `learn`, `refine`, the HTTP contract `api`, `clients`, `workflows` and
`serving`, then `cli`. Only `learn` (and `serving`) import torch, so the orchestrator and
the review UI run without it.
"""

__version__ = "0.1.0"
