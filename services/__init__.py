"""The four service shells (HTTP, CLI, UI) over the `regrasp` library.

Each subpackage is started on its own (`python -m services.trainer serve`, `bentoml serve`,
`streamlit run`) from the repository root; none imports another: they talk over HTTP
through the typed clients in `regrasp.clients`.
"""
