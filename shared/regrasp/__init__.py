"""Regrasp: human-in-the-loop refinement of robotic grasp datasets.

The library every service imports. Geometry (`grasps`, `metrics`, `maps`) sits at the
bottom with no I/O; `store` holds the database and object store; only `nets` and
`training` import torch, so the orchestrator and review UI run without it.
"""

__version__ = "0.1.0"
