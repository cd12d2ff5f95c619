"""The lead's pages under Streamlit's AppTest against a real orchestrator (uvicorn on
127.0.0.1, SQLite and a file store): people, starting a round and following its training,
applying it after a confirmation that says what changes, starting a campaign, and the
home page while a round trains.

No trainer runs (its URL is a closed port): a training job's record is written by the job
library as a worker writes it, so the pages show exactly what a worker reported.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest

from regrasp.api.accounts import UserCreate
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.data import versions as V
from regrasp.learn import queue as jobs
from regrasp.platform.errors import Unauthenticated
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import ReviewItem, Round, RoundState, User
from regrasp.refine.review.decisions import decide
from services.orchestrator.app import create_app
from tests.harness.inprocess import serve
from tests.harness.ports import closed_port
from tests.harness.seeders import audit_census, bare_dataset, seed_round, unflag_last
from tests.harness.ui import UI_APP

ADMIN = ("lead", "lead-password-1")
#: Bounds that only stop a hung test; nothing is timed.
WAIT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lead_ui")
    database_url = f"sqlite:///{root / 'regrasp.db'}"
    settings = Settings(
        data_dir=root / "data",
        database_url=database_url,
        object_store_url=f"file://{root / 'objects'}",
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
        trainer_url=f"http://127.0.0.1:{closed_port()}",
        inference_urls=[f"http://127.0.0.1:{closed_port()}"],
    )
    with serve(create_app(settings), "orchestrator") as url:
        engine = make_engine(database_url)
        try:
            with session_scope(engine) as s:
                dataset = bare_dataset(s, name="shelf", images=60)
            yield {"url": url, "engine": engine, "dataset_id": dataset}
        finally:
            engine.dispose()


@pytest.fixture
def lead(server, monkeypatch):
    monkeypatch.setenv("REGRASP_ORCHESTRATOR_URL", server["url"])
    st.cache_resource.clear()  # settings are read once per process: read this server's
    at = AppTest.from_file(str(UI_APP), default_timeout=60).run()
    at.text_input(key="login_username").input(ADMIN[0])
    at.text_input(key="login_password").input(ADMIN[1])
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    return at


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _api(server, user=ADMIN) -> OrchestratorClient:
    api = OrchestratorClient(server["url"])
    api.login(*user)
    return api


def _texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("info", "success", "error", "markdown", "caption")
        for e in getattr(at, kind)
    ]
    parts += [p.proto.text for p in at.get("progress")]
    return "\n".join(str(p) for p in parts)


def test_people_page_adds_a_person_and_resets_a_password(lead, server):
    at = _page(lead, "people")
    at.text_input(key="add_user_name").input("ana")
    at.button(key="add_user_submit").click().run()
    assert not at.exception and not at.error, at.error
    (shown,) = at.code
    generated = shown.value
    with _api(server, ("ana", generated)) as ana:
        assert ana.me().role == "annotator"
    assert "ana" in at.dataframe[0].value["user"].tolist() or "ana" in _texts(at)

    at.text_input(key="add_user_name").input("ana")  # taken: one line, nothing added
    at.button(key="add_user_submit").click().run()
    assert not at.exception and "already exists" in at.error[0].value

    at.selectbox(key="reset_user").set_value(
        next(u for u in _api(server).list_users() if u.username == "ana")
    )
    at.text_input(key="reset_password").input("ana-new-password")
    at.button(key="reset_submit").click().run()
    assert not at.exception and "reset" in at.success[0].value
    with pytest.raises(Unauthenticated):
        _api(server, ("ana", generated))
    _api(server, ("ana", "ana-new-password"))


def test_start_a_round_and_follow_its_training_epochs(lead, server):
    at = _page(lead, "rounds")
    before = {r.id for r in _api(server).list_rounds()}
    at.number_input(key="start_round_epochs").set_value(3)
    at.number_input(key="start_round_top_k").set_value(4)
    at.selectbox(key="start_round_flag_rule").set_value("score")
    at.number_input(key="start_round_hours").set_value(1.5)
    at.button(key="start_round_submit").click().run()
    assert not at.exception and not at.error, at.error
    (started,) = [r for r in _api(server).list_rounds() if r.id not in before]
    assert started.config["train"]["epochs"] == 3 and started.config["top_k"] == 4
    assert started.config["flag"] == "score" and started.config["review_budget_hours"] == 1.5
    assert started.config["review_budget"] is None  # 0 in the form: no item budget
    assert "started on shelf" in at.success[0].value

    # A round whose job a worker reports at epoch 2 of 10: the home page shows it training,
    # never "No round is open".
    with session_scope(server["engine"]) as s:
        job = jobs.submit(s, "train", {"dataset_id": server["dataset_id"], "config": {}})
        rnd = Round(dataset_id=server["dataset_id"], base_version=0, state=RoundState.training)
        rnd.train_job_id = job.id
        s.add(rnd)
        s.flush()
        job_id, round_id = job.id, rnd.id
    with session_scope(server["engine"]) as s:
        jobs.claim(s, "w1", job_id=job_id)
        metrics = {"phase": "train", "epoch": 2, "epochs": 10, "loss": 0.25}
        jobs.heartbeat(s, job_id, "w1", progress=0.2, metrics=metrics)
    home = _page(at, "home")
    text = _texts(home)
    assert f"round {round_id} on shelf v0 is training: epoch 2 of 10, loss 0.25" in text, text
    assert "No round is open" not in text
    with session_scope(server["engine"]) as s:  # done with it: nothing else may pick it up
        s.get(Round, round_id).state = RoundState.cancelled
        s.get(Round, started.id).state = RoundState.cancelled


def test_apply_from_the_ui_after_a_confirmation_of_what_changes(lead, server):
    engine, dataset = server["engine"], server["dataset_id"]
    with session_scope(engine) as s:
        version = V.latest_version(s, dataset)
        round_id = seed_round(s, dataset_id=dataset, top_k=2, max_images=3)
        me = s.scalar(sa.select(User.id).where(User.username == ADMIN[0]))
        items = s.scalars(sa.select(ReviewItem).where(ReviewItem.round_id == round_id)).all()
        labels = V.labels_at(s, dataset, version)
        for item, decision in zip(items, ["annotation_error", "fix", "missing_label"], strict=True):
            own = labels.grasp_ids[labels.image_ids == item.image_id]
            decide(
                s,
                item.id,
                me,
                item_version=item.version,
                decision=decision,
                removed_grasp_ids=[int(own[0])] if decision == "fix" else [],
                accepted_predictions=[1] if decision != "annotation_error" else [],
                seconds_taken=1.0,
            )
    # Home: the queue is empty, so the lead is told the next step, not only thanked.
    home = _page(lead, "home")
    home.selectbox(key="pick_Round").set_value(round_id).run()
    assert "Next step: apply the round" in _texts(home)
    review = _page(home, "review")  # the lead's own queue is empty: thanks, and the next step
    review.selectbox(key="pick_Round").set_value(round_id).run()
    assert not review.exception, review.exception
    assert f"Every flagged image of round {round_id} is decided. Next step: apply it." in (
        _texts(review)
    )

    at = _page(home, "rounds")
    shown = {m.label: m.value for m in at.metric}
    assert shown["Images removed"] == "1" and shown["Grasps added"] == "2"
    assert shown["Grasps removed (fixes)"] == "1" and shown["Labels removed with images"] == "3"
    assert at.button(key=f"apply_{round_id}").disabled  # not before the confirmation
    at.checkbox(key=f"apply_confirm_{round_id}").check().run()
    at.button(key=f"apply_{round_id}").click().run()
    assert not at.exception and not at.error, at.error
    api = _api(server)
    deadline = time.monotonic() + WAIT_S
    while (rnd := api.get_round(round_id)).state != "done":
        assert time.monotonic() < deadline and rnd.state == "applying", rnd
        time.sleep(0.2)
    with session_scope(engine) as s:
        after = V.labels_at(s, dataset, rnd.result_version)
    assert len(after) == len(labels) - 3 + 2 - 1
    assert len(np.unique(after.image_ids)) == len(np.unique(labels.image_ids)) - 1


def test_audit_a_round_from_the_ui(lead, server):
    """The Rounds page queues an audit (a census of the highest-ranked unflagged images and
    a random sample of the rest); a changed census is refused in one line."""
    engine, dataset = server["engine"], server["dataset_id"]
    with session_scope(engine) as s:
        round_id = seed_round(s, dataset_id=dataset, top_k=2, max_images=6)
        top = set(unflag_last(s, round_id, 4)[:2])
    try:
        at = _page(lead, "rounds")
        at.number_input(key=f"audit_count_{round_id}").set_value(1)
        at.number_input(key=f"audit_top_{round_id}").set_value(2)
        at.button(key=f"audit_submit_{round_id}").click().run()
        assert not at.exception and not at.error, at.error
        assert "3 audit items queued (3 in the round)" in _texts(at)
        with session_scope(engine) as s:
            census = audit_census(s, round_id)
        assert census == top
        at.number_input(key=f"audit_top_{round_id}").set_value(1)
        at.button(key=f"audit_submit_{round_id}").click().run()
        assert not at.exception and len(at.error) == 1, at.error
        assert "census of the top 2" in at.error[0].value
    finally:
        with session_scope(engine) as s:  # done with it: the other tests' pages stay as they were
            s.get(Round, round_id).state = RoundState.cancelled


def test_start_a_campaign_from_the_ui(lead, server):
    at = _page(lead, "campaigns")
    at.text_input(key="start_campaign_networks").input("ggcnn")
    for versions, why in (("9", "not 9"), ("0,x", "comma-separated numbers")):
        at.text_input(key="start_campaign_versions").input(versions)
        at.button(key="start_campaign_submit").click().run()
        assert not at.exception and len(at.error) == 1 and why in at.error[0].value, at.error
    assert _api(server).list_campaigns() == []

    at.text_input(key="start_campaign_versions").input("0")
    at.number_input(key="start_campaign_epochs").set_value(2)
    at.button(key="start_campaign_submit").click().run()
    assert not at.exception and not at.error, at.error
    (campaign,) = _api(server).list_campaigns()
    assert campaign.config["networks"] == ["ggcnn"] and campaign.config["versions"] == [0]
    assert campaign.config["train"]["epochs"] == 2 and campaign.test_images > 0
    assert f"Campaign {campaign.id} started" in at.success[0].value
    _api(server).cancel_campaign(campaign.id)


def test_navigation_while_signed_in(lead, server, monkeypatch):
    """No "Sign in" entry once signed in; People is the admins' page only."""
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        lead.switch_page("app_pages/login.py")
    _page(lead, "people")  # registered for an admin
    with _api(server) as api:
        api.create_user(UserCreate(username="nav-ann", password="nav-ann-password"))
    at = AppTest.from_file(str(UI_APP), default_timeout=60).run()
    at.text_input(key="login_username").input("nav-ann")
    at.text_input(key="login_password").input("nav-ann-password")
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    for page in ("people", "rounds", "login"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"app_pages/{page}.py")
