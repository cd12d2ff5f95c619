"""The review UI: a Streamlit app for annotators and the lab lead, over the orchestrator API.

It never touches the database or the object store: every read and write goes through
`regrasp.clients.orchestrator.OrchestratorClient`, images included.
"""
