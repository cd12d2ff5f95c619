"""Home: the rounds at work (training, predicting, applying), the open ones and the
current one's progress; for the lead, the next step once its queue is empty."""

from __future__ import annotations

import streamlit as st

from services.review_ui import lead, state

st.title("Review rounds")
api = state.api()
every = api.list_rounds()
names = state.dataset_names()
for rnd in sorted(every, key=lambda r: r.id):
    if rnd.state in lead.ACTIVE_STATES:
        lead.round_progress(rnd, names)
rounds = [r for r in every if r.state == "reviewing"]
if not rounds:
    if not any(r.state in lead.ACTIVE_STATES for r in every):
        st.info("No round is open for review right now.")
    else:
        st.caption("Its images come here for review once the model has predicted them.")
    st.stop()
round_id = state.choose_round(rounds)
stats = api.review_stats(round_id)
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
if stats.items and stats.pending == 0 and stats.leased == 0 and stats.adjudication == 0:
    lead.queue_done(next(r for r in rounds if r.id == round_id), names)
else:
    st.page_link("app_pages/review.py", label="Start reviewing", icon=":material/task_alt:")
