"""Typed HTTP clients of the services: `orchestrator`, `trainer`, `inference` (`base`: the
plumbing they share).

Services never import each other; they talk through these clients. The request and
response schemas are the contract in `regrasp.api`, which the services declare their
routes with, so a service and its callers use the same types.
"""
