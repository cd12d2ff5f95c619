"""Annotator statistics of a round: work done, decision mix, time, agreement (kappa)."""

from __future__ import annotations

import streamlit as st

from services.review_ui import overview, state

st.title("Annotators")
api = state.api()
rounds = sorted(api.list_rounds(), key=lambda r: -r.id)
round_id = state.choose_round([r for r in rounds if r.counts.items], label="Round")
if round_id is None:
    st.info("No round has review items yet.")
    st.stop()
stats = api.review_stats(round_id)
cols = st.columns(4)
cols[0].metric("Reviews", stats.reviews)
cols[1].metric("Double-reviewed items", stats.double_reviewed)
cols[2].metric("Agreement", "–" if stats.agreement is None else f"{stats.agreement:.0%}")
cols[3].metric("Cohen's kappa", "–" if stats.kappa is None else f"{stats.kappa:.2f}")
st.dataframe(overview.annotator_table(stats), hide_index=True, width="stretch")
