"""A round's options (`config`) and how its final decisions become a version (`applying`).

The round's steps (train, predict, review, apply) run in `regrasp.workflows.rounds`.
"""
