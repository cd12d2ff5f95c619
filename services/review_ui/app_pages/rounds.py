"""Rounds overview for the lead: flagged images, decision mix, accuracy and loss per round
(the paper's Figures 4–7)."""

from __future__ import annotations

import streamlit as st

from regrasp import viz
from services.review_ui import overview, state, widgets

st.title("Rounds")
api = state.api()
rounds = sorted(api.list_rounds(), key=lambda r: r.id)
if not rounds:
    st.info("No rounds yet.")
    st.stop()
datasets = sorted({r.dataset_id for r in rounds})
dataset_id = st.selectbox("Dataset", datasets, key="rounds_dataset")
rounds = [r for r in rounds if r.dataset_id == dataset_id]
stats = {r.id: api.review_stats(r.id) for r in rounds if r.counts.items}
table = overview.round_table(rounds, stats)
st.dataframe(table, hide_index=True, width="stretch")

series = overview.round_series(rounds, stats)
left, right = st.columns(2)
left.image(
    viz.chart_flagged(series.round_ids, flagged=series.flagged, reviewed=series.reviewed),
    width="stretch",
)
right.image(viz.chart_decision_mix(series.round_ids, mix=series.decision_mix), width="stretch")
if series.has_metrics:
    left, right = st.columns(2)
    left.image(
        viz.chart_metrics(
            series.round_ids,
            series=series.accuracy,
            ylabel="accuracy",
            title="Test accuracy per round",
        ),
        width="stretch",
    )
    right.image(
        viz.chart_metrics(
            series.round_ids, series=series.loss, ylabel="loss", title="Validation loss per round"
        ),
        width="stretch",
    )
else:
    st.caption("Accuracy and loss appear here once the rounds report their models' metrics.")

refinement = api.refinement(dataset_id)
widgets.refinement_section(refinement.rounds, refinement.stop)
