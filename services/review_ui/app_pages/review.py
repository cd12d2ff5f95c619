"""The review screen: one keystroke per decision, the next image already loaded.

Keys: T true negative · M missing label · A annotation error · F fix · N accept the
unmatched confident predictions (★) as new labels · 1–9 accept a prediction · S skip · U
undo the last decision · D depth/RGB · Z zoom · L all label numbers · X clear the marks.
Clicks: a label's dot on the picture marks that rectangle wrong (again:
unmarks it); a box or lasso drag marks every rectangle inside. Numbers can also be typed.

Every action runs in a callback (before the page is drawn again), so the page that follows
already shows the next item; `ReviewSession` keeps its pixels prefetched. Every callback
names the item it was drawn for and goes through `_act`: an action that raced the move to
the next item, a refused request or any other failure becomes one line on the screen, never
a traceback, and the annotator stays on an item.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from regrasp.platform.errors import Conflict, RegraspError
from services.review_ui import lead, state, widgets
from services.review_ui.session import (
    DECISION_KEYS,
    MAX_KEYED_PREDICTIONS,
    ReviewSession,
    StaleItem,
)

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

_log = logging.getLogger(__name__)

_LABELS = {
    "true_negative": "True negative",
    "missing_label": "Missing label",
    "annotation_error": "Annotation error",
    "fix": "Fix",
}
#: Heights of the picture in CSS pixels, chosen in the sidebar. The smallest, the default,
#: fits a 1366×768 screen with the header and the status line; larger screens can take more.
PICTURE_HEIGHTS = {"S": 560, "M": 720, "L": 900}
#: session_state key of a counter in the picker's and the number box's keys: bumped after
#: each pick, so the next run draws a fresh chart (no leftover selection) and empty box.
_NONCE = "review_pick_nonce"


def _act(session: ReviewSession, action: Callable[..., object], *args, **kwargs) -> None:
    """Run an action; any refusal or failure becomes one line on the next page.

    The line says what the last action did: a new action clears the previous one's.
    """
    session.last_error = None
    try:
        action(*args, **kwargs)
    except StaleItem as exc:
        session.last_error = str(exc)
    except Conflict as exc:
        # The item changed under us (decided by someone else, lease taken over):
        # say so and move on to what the queue offers now.
        try:
            session.start()
        except RegraspError:
            pass  # the message below still says what happened
        session.last_error = f"{exc} — showing the next item."
    except RegraspError as exc:
        session.last_error = str(exc)
    except Exception:  # the page must never show a traceback
        _log.exception("review action %s failed", getattr(action, "__name__", action))
        session.last_error = "That action failed (the error is in the server log); try again."


def _first_delivery(nonce: int) -> bool:
    """Whether a pick from the widget drawn with `nonce` is new, and then retire that
    widget. A key pressed right after a pick reruns the app while the pick's own run is in
    flight, and Streamlit then delivers the pick's event a second time: applied again,
    a toggle would undo itself. Each picture (and number box) gives one pick."""
    if nonce != st.session_state[_NONCE]:
        return False
    st.session_state[_NONCE] += 1
    return True


def _picked(session: ReviewSession, key: str, item_id: int, nonce: int) -> None:
    """A click, box or lasso on the picture: toggle those rectangles (see `pick_labels`);
    in draw mode a lasso stroke draws a grasp instead (see `draw_stroke`)."""
    if not _first_delivery(nonce):
        return
    selection = st.session_state.get(key)
    if session.drawing:
        stroke = widgets.picked_stroke(selection)
        if stroke is not None:
            _act(session, session.draw_stroke, *stroke, item_id=item_id)
        return
    numbers = widgets.picked_numbers(selection)
    if numbers:
        _act(session, session.pick_labels, numbers, item_id=item_id)


def _typed(session: ReviewSession, key: str, item_id: int, nonce: int) -> None:
    """Numbers typed in the box: exact numbers only, then the box empties."""
    if not _first_delivery(nonce):
        return
    text = st.session_state.get(key) or ""
    if text.strip():
        _act(session, session.pick_typed, text, item_id=item_id)


def _key_button(
    where: DeltaGenerator,
    label: str,
    key: str,
    shortcut: str,
    action: Callable[..., object],
    *args: object,
    disabled: bool = False,
    **kwargs: object,
) -> None:
    """A full-width button with its key that runs a session action through `_act` (a
    refusal is one line on the next page); `args` and `kwargs` go to the action."""
    where.button(
        label,
        key=key,
        shortcut=shortcut,
        width="stretch",
        on_click=_act,
        args=(session, action, *args),
        kwargs=kwargs,
        disabled=disabled,
    )


st.session_state.setdefault(_NONCE, 0)
try:
    rounds = state.reviewing_rounds()
except RegraspError as exc:
    st.error(f"Cannot list the rounds: {exc}")
    st.stop()
if not rounds:
    st.title("Review")
    st.info("No round is open for review right now.")
    st.stop()
with st.sidebar:
    round_id = state.choose_round(rounds)
    size = st.segmented_control(
        "Picture size",
        list(PICTURE_HEIGHTS),
        default="S",
        key="review_picture_size",
        help="S fits a 1366×768 screen with the buttons; M and L are for taller screens.",
    )
    st.caption(
        "**Keys** T true negative · M missing label · A annotation error · F fix · "
        "N accept ★ · 1–9 accept a prediction · G draw · E erase drawn · S skip · U undo · "
        "D depth · Z zoom · L numbers · X clear marks\n\n**Clicks** a label's dot marks it "
        "wrong (again: unmarks); drag a box or lasso to mark several. **Draw** (G): drag "
        "from one jaw to the other to add a grasp no label or prediction shows."
    )
try:
    session = state.review_session(round_id)
except RegraspError as exc:
    st.error(f"Cannot open round {round_id} for review: {exc}")
    st.stop()


@st.fragment(run_every=30)
def _keep_lease() -> None:
    """Renew the lease while the screen is open; show the time spent on the item."""
    try:
        session.maybe_heartbeat(every=60)
    except RegraspError as exc:
        st.caption(f":orange[Lease lost: {exc}]")
    st.caption(f":material/timer: {session.elapsed():.0f} s on this item")


if session.current is None:
    if session.last_error:
        st.warning(session.last_error)
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
item_id = item.id
mean = session.mean_seconds
status, timer = st.columns([5, 1], vertical_alignment="center")
status.markdown(
    f"**{item.object} / {item.image}** · item {item_id} · {len(item.labels)} labels · "
    f"decided this session **{session.decided}** · skipped {session.skipped} · "
    + (f"{mean:.1f} s per decision" if mean is not None else "first decision")
    + (" · second review" if item.required_reviews > 1 else "")
)
with timer:
    _keep_lease()

nonce = st.session_state[_NONCE]
picture, controls = st.columns([3, 2], gap="medium")
with picture:
    try:
        drawn = session.picture()
    except RegraspError as exc:
        st.error(f"Cannot draw item {item_id}: {exc}")
    else:
        pick_key = f"pick_{item_id}_{nonce}"
        widgets.label_picker(
            drawn,
            key=pick_key,
            height=PICTURE_HEIGHTS.get(size or "S", PICTURE_HEIGHTS["S"]),
            on_pick=_picked,
            args=(session, pick_key, item_id, nonce),
            drawing=session.drawing,
        )
    st.caption(widgets.LEGEND)

with controls:
    if session.last_error:
        st.warning(session.last_error)
    st.caption("**Decision**")
    row = st.columns(2)
    for k, name in enumerate(DECISION_KEYS):
        key, label = DECISION_KEYS[name], _LABELS[name]
        _key_button(row[k % 2], label, f"decide_{name}", key, session.decide, name, item_id=item_id)

    why = widgets.quality_reason(item)
    if why:
        st.caption(f"**Why this image:** {why}")
    unmatched = set(item.quality.unmatched) if item.quality is not None else set()
    if unmatched:
        st.button(
            f"Accept {', '.join(str(i + 1) for i in sorted(unmatched))} as new labels",
            key="accept_unmatched",
            shortcut="N",
            width="stretch",
            help="Missing label, accepting the confident predictions no label matches (★).",
            on_click=_act,
            args=(session, session.accept_unmatched),
            kwargs={"item_id": item_id},
        )

    n_pred = min(len(item.predictions), MAX_KEYED_PREDICTIONS)
    if n_pred:
        st.caption("**Predictions to accept** (missing label, fix)")
        # Rows of three: wide enough for "✓ 1★" beside its key hint.
        rows = [st.columns(3) for _ in range(0, n_pred, 3)]
        for i in range(n_pred):
            chosen = i in session.accepted
            rows[i // 3][i % 3].button(
                # Neutral like every button here: the tick and the picture's yellow tag say
                # it is accepted (a primary button would take the theme's red or blue).
                f"{'✓ ' if chosen else ''}{i + 1}{'★' if i in unmatched else ''}",
                key=f"pred_{i}",
                shortcut=str(i + 1),
                width="stretch",
                on_click=_act,
                args=(session, session.toggle_prediction, i),
                kwargs={"item_id": item_id},
            )
    else:
        st.caption("The model predicted no grasp here.")

    st.caption(
        f"**Drawn** (new labels, with Missing label or Fix): {len(session.drawn)}"
        + (" · :blue[drag jaw to jaw on the picture]" if session.drawing else "")
    )
    drawn_row = st.columns(2)
    label = "Stop drawing" if session.drawing else "Draw a grasp"
    _key_button(drawn_row[0], label, "draw_mode", "G", session.toggle_drawing)
    _key_button(
        drawn_row[1],
        "Erase last drawn",
        "erase_drawn",
        "E",
        session.erase_drawn,
        item_id=item_id,
        disabled=not session.drawn,
    )

    marked = session.wrong_numbers()
    st.caption(f"**Marked wrong** (removed by Fix): {len(marked)} of {len(item.labels)}")
    st.markdown(widgets.wrong_badges(marked, empty="none: click a rectangle's dot on the picture"))
    typed_key = f"typed_{item_id}_{nonce}"
    mark, clear = st.columns([3, 1], vertical_alignment="bottom")
    mark.text_input(
        "Mark by number",
        key=typed_key,
        placeholder="e.g. 12 or 3 7 or 10-14, then Enter",
        on_change=_typed,
        args=(session, typed_key, item_id, nonce),
    )
    _key_button(
        clear,
        "Clear",
        "clear_wrong",
        "X",
        session.set_wrong,
        set(),
        item_id=item_id,
        disabled=not marked,
    )

    queue = st.columns(2)
    _key_button(queue[0], "Skip", "skip", "S", session.skip, item_id=item_id)
    _key_button(queue[1], "Undo last", "undo", "U", session.undo, disabled=not session.undo_stack)
    view = session.view
    other = "rgb" if view.kind == "depth" else "depth"
    looks = st.columns(3)
    depth = "RGB" if other == "rgb" else "Depth"
    gone = session.current.depth is None
    _key_button(looks[0], depth, "view_kind", "D", session.change_view, kind=other, disabled=gone)
    zoom = "Unzoom" if view.zoom else "Zoom"
    _key_button(looks[1], zoom, "view_zoom", "Z", session.change_view, zoom=not view.zoom)
    numbers = "No numbers" if view.number_labels else "Numbers"
    flip = not view.number_labels
    _key_button(looks[2], numbers, "view_numbers", "L", session.change_view, number_labels=flip)
