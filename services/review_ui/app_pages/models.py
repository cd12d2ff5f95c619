"""Models (admins): every trained model with its evaluation accuracy, and promotion.

Promoting points the `production` alias at a model: what robots calling /predict get,
on every inference replica within seconds. The page shows the candidate's accuracy next
to the production model's before the button, so nobody promotes blind.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from regrasp.platform.errors import RegraspError
from services.review_ui import state

PRODUCTION = "production"

st.title("Models")
api = state.api()
models = api.list_models()
if not models:
    st.info("No models yet: a round or `regrasp train` registers them.")
    st.stop()
production = next((m for m in models if PRODUCTION in m.aliases), None)


def _accuracy(m) -> str:  # type: ignore[no-untyped-def]
    return "–" if m.accuracy is None else f"{m.accuracy:.1%} ({m.accuracy_metric})"


if production is None:
    st.warning("No model is in production: robots calling /predict get 503 until one is promoted.")
else:
    st.caption(
        f"In production: model **{production.id}** ({production.architecture}), "
        f"accuracy {_accuracy(production)}"
    )
table = pd.DataFrame(
    [
        {
            "id": m.id,
            "architecture": m.architecture,
            "status": m.status,
            "dataset": m.dataset_id,
            "version": m.dataset_version,
            "accuracy": m.accuracy,
            "metric": m.accuracy_metric,
            "aliases": ", ".join(m.aliases),
            "created": m.created_at,
        }
        for m in models
    ]
)
st.dataframe(table, hide_index=True, width="stretch")

st.subheader("Promote to production")
candidates = {m.id: m for m in models if m.status == "ready" and PRODUCTION not in m.aliases}
if not candidates:
    st.info("No other ready model to promote.")
    st.stop()
pick = st.selectbox(
    "Candidate",
    list(candidates),
    format_func=lambda i: (
        f"#{i} {candidates[i].architecture} · accuracy {_accuracy(candidates[i])}"
    ),
    key="model_promote_pick",
)
candidate = candidates[pick]
cols = st.columns(2)
cols[0].metric("Candidate accuracy", _accuracy(candidate))
cols[1].metric("Production accuracy", "–" if production is None else _accuracy(production))
if st.button(f"Promote model {candidate.id} to production", key="model_promote", type="primary"):
    try:
        api.promote_model(candidate.id)
    except RegraspError as exc:
        st.error(" ".join(str(exc).split()))
    else:
        st.success(f"Model {candidate.id} is in production; replicas serve it within seconds.")
        st.rerun()
