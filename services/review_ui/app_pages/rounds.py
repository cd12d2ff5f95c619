"""Rounds for the lead: start one, follow its training, audit it, apply it with a confirmation of
what changes, and the per-round overview (flagged images, decision mix, accuracy and loss:
the paper's Figures 4–7)."""

from __future__ import annotations

import streamlit as st

from regrasp.grasp import drawing as viz
from services.review_ui import lead, overview, state, widgets

st.title("Rounds")
api = state.api()
datasets = api.list_datasets()
names = {d.id: d.name for d in datasets}
if not datasets:
    st.info("No dataset yet: import one with `regrasp import NAME --jacquard PATH`.")
    st.stop()
with st.expander("Start a round", expanded=not api.list_rounds()):
    lead.start_round_form(api, datasets)


@st.fragment(run_every=5)
def _working() -> None:
    """The rounds working on their own (training, predicting, applying), refreshed."""
    for rnd in sorted(api.list_rounds(), key=lambda r: r.id):
        if rnd.state in lead.ACTIVE_STATES:
            lead.round_progress(rnd, names)


_working()
rounds = sorted(api.list_rounds(), key=lambda r: r.id)
if not rounds:
    st.stop()
for rnd in rounds:
    if rnd.state == "reviewing":
        with st.container(border=True):
            lead.audit_section(api, rnd)
            lead.apply_section(api, rnd, names)

with_rounds = sorted({r.dataset_id for r in rounds})
dataset_id = st.selectbox(
    "Dataset",
    with_rounds,
    format_func=lambda i: names.get(i, f"dataset {i}"),
    key="rounds_dataset",
)
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
