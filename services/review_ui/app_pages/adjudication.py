"""The adjudication queue: items whose two reviews disagree, settled by an admin.

Colours as on the review screen (`widgets.LEGEND`): green labels, red predictions, orange
the labels marked wrong, cyan the grasps a reviewer drew, in the pictures and as badges;
the controls are neutral. The admin's decision may keep the grasps any reviewer drew.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from regrasp.api.review import DECISIONS, DecisionCreate
from regrasp.grasp import drawing as viz
from regrasp.grasp.imaging import decode_rgb
from regrasp.platform.errors import RegraspError
from services.review_ui import overview, state, widgets
from services.review_ui.session import parse_label_numbers

st.title("Adjudication")
api = state.api()
rounds = [r for r in api.list_rounds() if r.state == "reviewing"]
round_id = state.choose_round(rounds, label="Round")
if round_id is None:
    st.info("No round is open for review.")
    st.stop()
cases = api.adjudication_queue(round_id)
if not cases:
    st.success("No disagreements wait for you in this round.")
    st.stop()
st.caption(f"{len(cases)} items wait for a decision.")
case = cases[0]
item = case.item
st.session_state.setdefault(f"adj_started_{item.id}", time.monotonic())

labels, preds = overview.grasp_arrays(item)
rgb = decode_rgb(api.image_bytes(item.image_id, "rgb"))
columns = st.columns(len(case.reviews))
for column, review in zip(columns, case.reviews, strict=True):
    ids = [g.grasp_id for g in item.labels]
    picture = viz.review_overlay(
        rgb,
        labels=labels,
        predictions=preds,
        wrong=[i for i, gid in enumerate(ids) if gid in review.removed_grasp_ids],
        accepted=review.accepted_prediction_indices,
        drawn=np.asarray(review.drawn_grasps, dtype=np.float64).reshape(-1, 5),
        zoom=True,
        size=512,
    )
    column.image(viz.to_png(picture), width="stretch")
    marked = [n + 1 for n, gid in enumerate(ids) if gid in review.removed_grasp_ids]
    column.markdown(
        f"**{case.usernames.get(review.annotator_id, '?')}**: {review.decision}"
        f" · accepted {[i + 1 for i in review.accepted_prediction_indices]}"
        f" · wrong {len(marked)} · drew {len(review.drawn_grasps)}"
    )
    if marked:
        column.markdown(widgets.wrong_badges(marked, empty=""))
st.caption(widgets.LEGEND)

decision = st.radio("Final decision", DECISIONS, horizontal=True, key=f"adj_decision_{item.id}")
accepted = st.multiselect(
    "Predictions to accept",
    [p.index + 1 for p in item.predictions],
    key=f"adj_accept_{item.id}",
)
drawers = {
    f"{case.usernames.get(r.annotator_id, '?')} ({len(r.drawn_grasps)})": r.drawn_grasps
    for r in case.reviews
    if r.drawn_grasps
}
keep = st.multiselect(
    "Keep the grasps drawn by",
    list(drawers),
    key=f"adj_drawn_{item.id}",
    help="They become labels with a missing label or a fix.",
)
numbers = {n + 1: g.grasp_id for n, g in enumerate(item.labels)}
# Typed numbers, exact (a multiselect would match "2" in 12, 20–29…), shown as orange badges.
typed = st.text_input(
    "Wrong label numbers",
    key=f"adj_wrong_{item.id}",
    placeholder="e.g. 12 or 3 7 or 10-14",
)
try:
    wrong = parse_label_numbers(typed or "", len(numbers))
except RegraspError as exc:
    wrong, bad = [], str(exc)
else:
    bad = ""
if bad:
    st.error(bad)
st.markdown(
    f"**Marked wrong** (removed by a fix): {len(wrong)} of {len(numbers)} · "
    + widgets.wrong_badges(wrong, empty="none")
)
if st.button("Resolve", key="adj_resolve", type="primary", disabled=bool(bad)):
    body = DecisionCreate(
        item_version=item.version,
        decision=decision,
        accepted_predictions=[i - 1 for i in accepted],
        removed_grasp_ids=[numbers[n] for n in wrong],
        drawn_grasps=[g for name in keep for g in drawers[name]],
        seconds_taken=round(time.monotonic() - st.session_state[f"adj_started_{item.id}"], 3),
    )
    try:
        api.resolve(item.id, body)
    except RegraspError as exc:
        st.error(str(exc))
    else:
        st.rerun()
