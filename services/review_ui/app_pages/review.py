"""The review screen: one keystroke per decision, the next image already loaded.

Keys: T true negative · M missing label · A annotation error · F fix · 1–9 accept a
prediction · S skip · U undo the last decision · D depth/RGB · Z zoom · L label numbers.
Every action runs in a button callback (before the page is drawn again), so the page that
follows already shows the next item; `ReviewSession` keeps its pixels prefetched.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from regrasp.errors import Conflict, RegraspError
from services.review_ui import lead, state
from services.review_ui.session import (
    DECISION_KEYS,
    MAX_KEYED_PREDICTIONS,
    ReviewSession,
    View,
)

_LABELS = {
    "true_negative": "True negative",
    "missing_label": "Missing label",
    "annotation_error": "Annotation error",
    "fix": "Fix",
}


def _act(session: ReviewSession, action: Callable[[], object]) -> None:
    """Run an action; a refusal becomes a message on the next page, not a traceback."""
    try:
        action()
    except Conflict as exc:
        # The item changed under us (decided by someone else, lease taken over):
        # say so and move on to what the queue offers now.
        session.last_error = f"{exc} — showing the next item."
        session.start()
    except RegraspError as exc:
        session.last_error = str(exc)


def _wrong_changed(session: ReviewSession, key: str, numbers: dict[int, int]) -> None:
    session.set_wrong({numbers[n] for n in st.session_state[key]})


def _set_view(session: ReviewSession, **change: object) -> None:
    view = session.view
    session.set_view(View(**{**view.__dict__, **change}))


rounds = state.reviewing_rounds()
st.title("Review")
if not rounds:
    st.info("No round is open for review right now.")
    st.stop()
round_id = state.choose_round(rounds)
session = state.review_session(round_id)

if session.last_error:
    st.warning(session.last_error)


@st.fragment(run_every=30)
def _keep_lease() -> None:
    """Renew the lease while the screen is open; show the time spent on the item."""
    try:
        session.maybe_heartbeat(every=60)
    except RegraspError as exc:
        st.warning(f"Lease lost: {exc}")
    st.caption(f":material/timer: {session.elapsed():.0f} s on this item")


if session.current is None:
    st.success("Nothing left for you in this round. Thank you!")
    lead.after_queue(round_id)  # the lead's next step (apply), not just thanks
    st.button(
        "Undo last",
        key="undo",
        shortcut="U",
        on_click=_act,
        args=(session, session.undo),
        disabled=not session.undo_stack,
    )
    st.stop()

item = session.current.item
mean = session.mean_seconds
st.markdown(
    f"**{item.object} / {item.image}** · item {item.id} · "
    f"decided this session **{session.decided}** · skipped {session.skipped} · "
    + (f"{mean:.1f} s per decision" if mean is not None else "first decision")
    + (" · second review" if item.required_reviews > 1 else "")
)
_keep_lease()

picture, controls = st.columns([3, 2], gap="medium")
with picture:
    st.image(session.render(), width="stretch")
    st.caption(
        "Green: labels · red: the model's predictions (1 = best) · orange ✕: marked wrong · "
        "yellow tag: accepted. Thick edges are the jaws."
    )

with controls:
    st.subheader("Decision")
    row = st.columns(2)
    for k, name in enumerate(DECISION_KEYS):
        row[k % 2].button(
            f"{_LABELS[name]}",
            key=f"decide_{name}",
            shortcut=DECISION_KEYS[name],
            type="primary" if name == "true_negative" else "secondary",
            width="stretch",
            on_click=_act,
            args=(session, lambda n=name: session.decide(n)),
        )

    st.subheader("Predictions to accept")
    n_pred = min(len(item.predictions), MAX_KEYED_PREDICTIONS)
    if n_pred:
        pred_cols = st.columns(n_pred)
        for i in range(n_pred):
            chosen = i in session.accepted
            pred_cols[i].button(
                f"{'✓ ' if chosen else ''}{i + 1}",
                key=f"pred_{i}",
                shortcut=str(i + 1),
                type="primary" if chosen else "secondary",
                on_click=_act,
                args=(session, lambda i=i: session.toggle_prediction(i)),
            )
    else:
        st.caption("The model predicted no grasp here.")

    st.subheader("Wrong rectangles (fix)")
    numbers = {n + 1: g.grasp_id for n, g in enumerate(item.labels)}
    wrong_key = f"wrong_{item.id}"
    st.multiselect(
        "Label numbers (press L to show them on the image)",
        list(numbers),
        default=[n for n, gid in numbers.items() if gid in session.wrong],
        key=wrong_key,
        on_change=_wrong_changed,
        args=(session, wrong_key, numbers),
    )

    st.subheader("Queue")
    q = st.columns(2)
    q[0].button(
        "Skip",
        key="skip",
        shortcut="S",
        width="stretch",
        on_click=_act,
        args=(session, session.skip),
    )
    q[1].button(
        "Undo last",
        key="undo",
        shortcut="U",
        width="stretch",
        on_click=_act,
        args=(session, session.undo),
        disabled=not session.undo_stack,
    )

    st.subheader("View")
    v = st.columns(3)
    view = session.view
    other = "rgb" if view.kind == "depth" else "depth"
    v[0].button(
        f"{'RGB' if other == 'rgb' else 'Depth'}",
        key="view_kind",
        shortcut="D",
        on_click=_set_view,
        args=(session,),
        kwargs={"kind": other},
        disabled=session.current.depth is None,
    )
    v[1].button(
        "Unzoom" if view.zoom else "Zoom",
        key="view_zoom",
        shortcut="Z",
        on_click=_set_view,
        args=(session,),
        kwargs={"zoom": not view.zoom},
    )
    v[2].button(
        "Hide numbers" if view.number_labels else "Label numbers",
        key="view_numbers",
        shortcut="L",
        on_click=_set_view,
        args=(session,),
        kwargs={"number_labels": not view.number_labels},
    )
