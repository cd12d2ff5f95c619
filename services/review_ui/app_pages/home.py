"""Home: the open rounds and the current one's progress."""

from __future__ import annotations

import streamlit as st

from services.review_ui import state

st.title("Review rounds")
rounds = state.reviewing_rounds()
if not rounds:
    st.info("No round is open for review right now.")
    st.stop()
round_id = state.choose_round(rounds)
stats = state.api().review_stats(round_id)
done = stats.decided + stats.adjudication
st.progress(done / stats.items if stats.items else 1.0, text=f"{done} of {stats.items} reviewed")
cols = st.columns(5)
cols[0].metric("Pending", stats.pending)
cols[1].metric("Being reviewed", stats.leased)
cols[2].metric("Decided", stats.decided)
cols[3].metric("Awaiting an admin", stats.adjudication)
cols[4].metric(
    "Seconds per decision",
    f"{stats.median_seconds:.1f}" if stats.median_seconds is not None else "–",
)
mine = next((a for a in stats.annotators if a.username == state.user().username), None)
if mine is not None:
    st.caption(f"You decided {mine.decided} items in this round.")
st.page_link("app_pages/review.py", label="Start reviewing", icon=":material/task_alt:")
