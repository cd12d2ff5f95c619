"""The orchestrator: the only writer of dataset state (users, imports, versions, exports).

A stateless FastAPI shell over the `regrasp` library: every piece of state lives in the
database and the object store, so replicas can run side by side. `create_app(settings)`
builds the application; `python -m services.orchestrator serve` runs it.
"""
