"""The review UI with Streamlit's AppTest against a running orchestrator process.

One orchestrator (`python -m services.orchestrator serve`) on 127.0.0.1 over a temporary
SQLite database and file store; a small synthetic dataset imported through its API and a
round seeded open for review. The app talks to it over HTTP exactly as in production.
Covers sign-in, a queue reviewed end to end with every decision kind, skip, undo, the
lead's pages, and a double review settled on the adjudication page; plus the review
session's prefetch cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.store.db.engine import make_engine, session_scope
from services.review_ui.session import ReviewSession, StaleItem
from tests.harness.processes import local_orchestrator
from tests.harness.seeders import import_synthetic, seed_round

APP = str(Path(__file__).resolve().parents[2] / "services/review_ui/streamlit_app.py")
ADMIN = ("lead", "lead-password-1")
ANA = ("ana", "annotator-password")
BOB = ("bob", "annotator-password")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("review_ui")
    with local_orchestrator(root, admin=ADMIN, users=[ANA, BOB]) as orchestrator:
        with OrchestratorClient(orchestrator.url) as api:
            api.login(*ADMIN)
            orchestrator.dataset_id = import_synthetic(api, name="ui", images=8, size=192)
        yield orchestrator


def _open_round(server, *, double: float = 0.0, max_images: int = 4) -> int:
    engine = make_engine(server.database_url)
    try:
        with session_scope(engine) as session:
            return seed_round(
                session,
                dataset_id=server.dataset_id,
                double_review_fraction=double,
                max_images=max_images,
            )
    finally:
        engine.dispose()


@pytest.fixture
def app(server, monkeypatch):
    monkeypatch.setenv("REGRASP_ORCHESTRATOR_URL", server.url)
    st.cache_resource.clear()  # settings are read once per process: read this server's

    def make() -> AppTest:
        return AppTest.from_file(APP, default_timeout=60)

    return make


def _signed_in(make, user) -> AppTest:
    at = make().run()
    assert not at.exception
    at.text_input(key="login_username").input(user[0])
    at.text_input(key="login_password").input(user[1])
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    return at


def _review_page(at: AppTest, round_id: int) -> AppTest:
    at.switch_page("app_pages/review.py").run()
    assert not at.exception, at.exception
    pick = at.selectbox(key="pick_Round")
    if pick.value != round_id:
        pick.set_value(round_id).run()
    assert not at.exception, at.exception
    return at


def _session(at: AppTest) -> ReviewSession:
    return at.session_state["review_session"]


def _press(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def test_sign_in_refuses_a_wrong_password_then_shows_home(app, server):
    at = app().run()
    at.text_input(key="login_username").input(ANA[0])
    at.text_input(key="login_password").input("not-the-password")
    at.button(key="login_submit").click().run()
    assert not at.exception
    assert at.error and "password" in at.error[0].value.lower()
    round_id = _open_round(server, max_images=2)
    at = _signed_in(app, ANA)
    at.selectbox(key="pick_Round").set_value(round_id).run()
    assert not at.exception
    assert [m.label for m in at.metric][:3] == ["Pending", "Being reviewed", "Decided"]
    assert at.metric[0].value == "2"


def test_review_a_queue_end_to_end_with_every_decision(app, server):
    round_id = _open_round(server, max_images=5)
    at = _review_page(_signed_in(app, ANA), round_id)
    session = _session(at)
    seen = [session.current.item.id]
    (chart,) = at.get("plotly_chart")  # the clickable overlay is on screen
    spec = json.loads(chart.proto.spec)
    assert spec["layout"]["images"][0]["source"].startswith("data:image/png;base64,")

    # Missing label: accept predictions 2 and 3 with their keys' buttons.
    _press(at, "pred_1")
    _press(at, "pred_2")
    assert _session(at).accepted == {1, 2}
    _press(at, "decide_missing_label")
    review = _session(at).undo_stack[-1].review
    assert review.decision == "missing_label" and review.accepted_prediction_indices == [1, 2]
    seen.append(_session(at).current.item.id)

    # Fix: mark the first label wrong (typed; clicks are in the browser test) and accept
    # prediction 1.
    item = _session(at).current.item
    _type_numbers(at, item.id, "1")
    assert _session(at).wrong == {item.labels[0].grasp_id}
    _press(at, "pred_0")
    _press(at, "decide_fix")
    review = _session(at).undo_stack[-1].review
    assert review.decision == "fix" and review.removed_grasp_ids == [item.labels[0].grasp_id]

    # Skip one, then an annotation error and a true negative.
    skipped = _session(at).current.item.id
    _press(at, "skip")
    assert _session(at).current.item.id != skipped
    _press(at, "decide_annotation_error")
    _press(at, "view_zoom")  # view toggles redraw the item without leaving it
    _press(at, "view_kind")
    assert not _session(at).view.zoom and _session(at).view.kind == "depth"  # zoomed by default
    _press(at, "decide_true_negative")

    # Undo brings the last decided item back; deciding it again replaces the decision.
    last = _session(at).undo_stack[-1].item_id
    _press(at, "undo")
    assert _session(at).current.item.id == last
    _press(at, "decide_true_negative")

    # Only the skipped item is left; then the queue is empty.
    assert _session(at).current.item.id == skipped
    _press(at, "decide_true_negative")
    assert _session(at).current is None
    assert any("Nothing left" in s.value for s in at.success)

    stats = _client(server, ANA).review_stats(round_id)
    assert stats.decided == 5 and stats.pending == 0
    assert {k for k, v in stats.decision_mix.items() if v} == {
        "true_negative",
        "missing_label",
        "annotation_error",
        "fix",
    }
    assert stats.annotators[0].changed == 1  # the undone decision, kept superseded


def test_error_details_only_in_development_and_no_deploy_button(app, monkeypatch):
    try:
        app().run()
        assert st_config.get_option("client.showErrorDetails") == "full"
        assert st_config.get_option("client.toolbarMode") == "viewer"
        monkeypatch.setenv("REGRASP_MODE", "deployment")
        monkeypatch.setenv("REGRASP_SECRET_KEY", "a-deployment-secret-" + "k" * 20)
        monkeypatch.setenv("REGRASP_SERVICE_API_KEY", "a-service-api-key-" + "s" * 20)
        monkeypatch.setenv(
            "REGRASP_DATABASE_URL", "postgresql+psycopg://regrasp:a-strong-one@db/regrasp"
        )
        st.cache_resource.clear()
        at = app().run()
        assert not at.exception, at.exception
        assert st_config.get_option("client.showErrorDetails") == "none"
    finally:
        st_config.set_option("client.showErrorDetails", "full")
        st_config.set_option("client.toolbarMode", "auto")
        st.cache_resource.clear()


def test_typed_numbers_are_exact_and_bad_ones_are_one_line(app, server):
    round_id = _open_round(server, max_images=1)
    at = _review_page(_signed_in(app, ANA), round_id)
    item = _session(at).current.item
    assert len(item.labels) >= 2
    _type_numbers(at, item.id, "2")  # label 2 only: never 12, 20-29 (a substring match)
    assert _session(at).wrong == {item.labels[1].grasp_id}
    assert any("of " + str(len(item.labels)) in c.value for c in at.caption)
    for bad, says in (("999", "does not exist"), ("2x", "is not a label number")):
        _type_numbers(at, item.id, bad)
        assert says in at.warning[0].value and "Traceback" not in at.warning[0].value
        assert _session(at).wrong == {item.labels[1].grasp_id}  # nothing changed
    _type_numbers(at, item.id, "2")  # the same number again unmarks it
    assert _session(at).wrong == set()
    _press(at, "decide_true_negative")


def test_a_pick_racing_a_fix_never_leaks_into_the_next_item(app, server):
    # The reported crash: a label picked, F pressed, and both reach the app in one run
    # (the pick's own run had not finished). The pick names the item it was made on, so
    # it applies to that item or is refused with one line, never to the next item.
    round_id = _open_round(server, max_images=3)
    at = _review_page(_signed_in(app, ANA), round_id)
    first = _session(at).current.item
    ids = [g.grasp_id for g in first.labels]
    _type_numbers(at, first.id, "2")
    nonce = at.session_state["review_pick_nonce"]
    at.text_input(key=f"typed_{first.id}_{nonce}").input("1")
    at.button(key="decide_fix").click().run()
    assert not at.exception, at.exception
    session = _session(at)
    assert session.current.item.id != first.id and session.wrong == set()
    review = session.undo_stack[-1].review
    assert review.decision == "fix"
    if review.removed_grasp_ids == sorted(ids[:2]):
        pass  # the pick ran first: it belonged to the fixed item
    else:  # the decision ran first: the late pick was refused, in one line
        assert review.removed_grasp_ids == [ids[1]]
        assert "no longer on screen" in at.warning[0].value
    # A pick for an item that is gone changes nothing, as a message (never a traceback).
    with pytest.raises(StaleItem):
        session.pick_labels([1], item_id=first.id)
    assert session.wrong == set()


def test_double_review_settled_on_the_adjudication_page(app, server):
    round_id = _open_round(server, double=1.0, max_images=1)
    ana = _review_page(_signed_in(app, ANA), round_id)
    _press(ana, "decide_true_negative")
    bob = _review_page(_signed_in(app, BOB), round_id)
    _press(bob, "decide_annotation_error")

    lead = _signed_in(app, ADMIN)
    lead.switch_page("app_pages/adjudication.py").run()
    assert not lead.exception, lead.exception
    lead.selectbox(key="pick_Round").set_value(round_id).run()
    assert len(lead.image) == 2  # both annotators' readings side by side
    (case,) = _client(server, ADMIN).adjudication_queue(round_id)
    # Wrong labels are typed as exact numbers and shown as orange badges, as on the review
    # screen (red is only ever the predictions); a bad number is one line and blocks Resolve.
    wrong = lead.text_input(key=f"adj_wrong_{case.item.id}")
    wrong.set_value("2x").run()
    assert [e.value for e in lead.error] == [
        "'2x' is not a label number (type e.g. 12, 3 7 or 10-14)"
    ]
    assert lead.button(key="adj_resolve").disabled
    wrong.set_value("2 1").run()
    assert not lead.error and not lead.button(key="adj_resolve").disabled
    marks = [m.value for m in lead.markdown if m.value.startswith("**Marked wrong**")]
    count = len(case.item.labels)
    badges = ":orange-badge[2] :orange-badge[1]"
    assert marks == [f"**Marked wrong** (removed by a fix): 2 of {count} · {badges}"]
    assert not any(":red" in m.value for m in lead.markdown)
    wrong.set_value("").run()
    lead.radio(key=f"adj_decision_{case.item.id}").set_value("annotation_error").run()
    _press(lead, "adj_resolve")
    assert any("No disagreements" in s.value for s in lead.success)
    stats = _client(server, ADMIN).review_stats(round_id)
    assert stats.decided == 1 and stats.decision_mix["annotation_error"] == 1
    assert stats.double_reviewed == 1 and stats.agreement == 0.0

    # The lead's other pages render with this data.
    for page in ("app_pages/rounds.py", "app_pages/annotators.py", "app_pages/diff.py"):
        lead.switch_page(page).run()
        assert not lead.exception, (page, lead.exception)
    assert lead.dataframe or lead.info or lead.metric


def test_prefetch_serves_the_next_item_from_the_cache(server):
    round_id = _open_round(server, max_images=3)
    api = _client(server, BOB)
    session = ReviewSession(api, round_id, prefetch=True, size=256)
    try:
        first = session.start()
        upcoming = session.wait_prefetched(timeout=30)
        assert upcoming and first.item.id not in upcoming
        session.decide("true_negative")
        assert session.current.item.id in upcoming  # shown from the cache
        assert session.current.item.id not in session.wait_prefetched(timeout=30)
        assert session.current.renders  # its default view was rendered ahead
    finally:
        session.close()


def _type_numbers(at: AppTest, item_id: int, text: str) -> AppTest:
    nonce = at.session_state["review_pick_nonce"]
    at.text_input(key=f"typed_{item_id}_{nonce}").input(text).run()
    assert not at.exception, at.exception
    return at


def _client(server, user) -> OrchestratorClient:
    api = OrchestratorClient(server.url)
    api.login(*user)
    return api


def test_one_key_accepts_the_predictions_no_label_matches(app, server):
    """The item says why it was queued (the label-quality score) and N accepts the
    confident predictions no label matches as new labels, in one decision."""
    round_id = _open_round(server, max_images=2)
    at = _review_page(_signed_in(app, ANA), round_id)
    item = _session(at).current.item
    assert item.quality is not None and item.quality.unmatched  # the top-1, turned 90°
    unmatched = sorted(item.quality.unmatched)
    captions = " ".join(c.value for c in at.caption)
    assert "Why this image" in captions
    assert any(b.label.endswith("★") for b in at.button if b.key and b.key.startswith("pred_"))
    _press(at, "accept_unmatched")
    review = _session(at).undo_stack[-1].review
    assert review.decision == "missing_label"
    assert review.accepted_prediction_indices == unmatched
    assert _session(at).current is None or _session(at).current.item.id != item.id


def test_a_drawn_grasp_goes_from_the_picture_to_the_label_and_a_second_reviewer_keeps_it(
    app, server
):
    """Draw mode on the review screen: G switches it on, a stroke on the (zoomed) picture
    becomes the grasp between its ends in image pixels, E erases the last one, a missing
    label sends the drawing; the second reviewer of the double review finds it drawn,
    keeps it, and the two agree; undo brings the drawing back."""
    round_id = _open_round(server, double=1.0, max_images=1)
    at = _review_page(_signed_in(app, ANA), round_id)
    session = _session(at)
    item = session.current.item
    assert session.view.zoom and not session.drawing
    _press(at, "draw_mode")
    assert session.drawing and any("drag jaw to jaw" in c.value for c in at.caption)
    frame = session._frame(session.current)
    start, end = (100.0, 120.0), (140.0, 150.0)
    grasp = session.draw_stroke(start, end, item_id=item.id)
    a, b = frame.to_image(np.array([start, end]))
    np.testing.assert_allclose(grasp[:2], (a + b) / 2)
    np.testing.assert_allclose(grasp[3], np.hypot(*(b - a)))  # opening in image pixels
    labels = np.array([g.grasp for g in item.labels])
    assert grasp[4] == pytest.approx(np.median(labels[:, 4]))
    session.draw_stroke((10.0, 10.0), (30.0, 10.0), item_id=item.id)
    at.run()
    _press(at, "erase_drawn")
    assert session.drawn == [grasp]
    with pytest.raises(StaleItem):
        session.draw_stroke(start, end, item_id=item.id + 999)
    _press(at, "decide_missing_label")
    review = session.undo_stack[-1].review
    assert (review.decision, review.accepted_prediction_indices) == ("missing_label", [])
    np.testing.assert_allclose(review.drawn_grasps, [grasp])
    _press(at, "undo")
    assert session.current.item.id == item.id and session.drawn == [tuple(review.drawn_grasps[0])]
    _press(at, "decide_missing_label")

    bob = ReviewSession(_client(server, BOB), round_id, prefetch=False, size=256)
    try:
        shown = bob.start()
        assert shown.item.id == item.id
        np.testing.assert_allclose(bob.drawn, [grasp])  # the proposal, drawn already
        bob.decide("missing_label")
    finally:
        bob.close()
    with _client(server, ADMIN) as admin:
        assert admin.review_item(item.id).state == "decided"


def test_the_admin_keeps_a_reviewers_drawn_grasps_when_settling(app, server):
    round_id = _open_round(server, double=1.0, max_images=1)
    ana = _review_page(_signed_in(app, ANA), round_id)
    session = _session(ana)
    item_id = session.current.item.id
    _press(ana, "draw_mode")
    grasp = session.draw_stroke((100.0, 120.0), (140.0, 150.0), item_id=item_id)
    _press(ana, "decide_missing_label")
    bob = _review_page(_signed_in(app, BOB), round_id)
    assert len(_session(bob).drawn) == 1  # ana's proposal
    _press(bob, "erase_drawn")
    _press(bob, "decide_true_negative")  # bob disagrees: the item goes to the lead

    lead = _signed_in(app, ADMIN)
    lead.switch_page("app_pages/adjudication.py").run()
    lead.selectbox(key="pick_Round").set_value(round_id).run()
    assert not lead.exception, lead.exception
    assert any("drew 1" in m.value for m in lead.markdown)
    keep = lead.multiselect(key=f"adj_drawn_{item_id}")
    assert keep.options == ["ana (1)"]
    keep.set_value(["ana (1)"]).run()
    lead.radio(key=f"adj_decision_{item_id}").set_value("missing_label").run()
    _press(lead, "adj_resolve")
    assert any("No disagreements" in s.value for s in lead.success)
    with _client(server, ADMIN) as admin:
        (verdict,) = [r for r in admin.item_reviews(item_id) if r.adjudication]
    assert verdict.decision == "missing_label"
    np.testing.assert_allclose(verdict.drawn_grasps, [grasp])
