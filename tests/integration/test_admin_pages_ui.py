"""The review UI's admin pages for keys and models, under AppTest against a real
orchestrator process (SQLite, file store): an admin makes a robot key (shown once) and
revokes it; sees each candidate model's accuracy and promotes one."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.errors import Unauthenticated
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Model, ModelStatus
from tests.harness.processes import local_orchestrator
from tests.harness.ui import UI_APP

ADMIN = ("lead", "lead-password-1")
ANA = ("ana", "annotator-password")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("admin_pages")
    with local_orchestrator(root, admin=ADMIN, users=[ANA]) as orchestrator:
        yield orchestrator


def _page(server, monkeypatch, user, page: str) -> AppTest:
    monkeypatch.setenv("REGRASP_ORCHESTRATOR_URL", server.url)
    st.cache_resource.clear()
    at = AppTest.from_file(str(UI_APP), default_timeout=60).run()
    at.text_input(key="login_username").input(user[0])
    at.text_input(key="login_password").input(user[1])
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_api_keys_page_makes_a_robot_key_once_and_revokes_it(server, monkeypatch):
    at = _page(server, monkeypatch, ADMIN, "app_pages/api_keys.py")
    at.text_input(key="api_key_name").input("ur5-cell-1")
    assert at.selectbox(key="api_key_scope").value == "robot"  # least privilege by default
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    key = at.code[0].value
    assert key.startswith("rgk_")
    assert "not shown again" in at.success[0].value
    table = at.dataframe[0].value
    assert list(table["name"]) == ["ur5-cell-1"] and list(table["scope"]) == ["robot"]
    assert key not in table.to_string()

    # The robot's key works nowhere on the orchestrator, then not at all once revoked.
    with OrchestratorClient(server.url) as robot:
        robot.use_credential(key)
        with pytest.raises(Exception, match="robot API key"):
            robot.list_models()
    at.button(key="api_key_revoke").click().run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["state"]) == ["revoked"]
    assert not at.code  # the key is not shown again
    with OrchestratorClient(server.url) as robot, pytest.raises(Unauthenticated):
        robot.use_credential(key)
        robot.list_models()

    # Bad input: one line, nothing made.
    at.text_input(key="api_key_name").input("")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.error and "name" in at.error[0].value
    assert len(at.dataframe[0].value) == 1


def test_models_page_shows_accuracy_and_promotes(server, monkeypatch):
    engine = make_engine(server.database_url)
    with session_scope(engine) as s:
        rows = [
            Model(
                architecture="ggcnn",
                in_channels=1,
                status=ModelStatus.ready,
                weights_key=f"models/m{i}/weights.pt",
                metrics={"test_accuracy": acc},
            )
            for i, acc in enumerate((0.55, 0.72))
        ]
        s.add_all(rows)
        s.flush()
        first, second = rows[0].id, rows[1].id
    engine.dispose()

    at = _page(server, monkeypatch, ADMIN, "app_pages/models.py")
    assert at.warning and "No model is in production" in at.warning[0].value
    at.selectbox(key="model_promote_pick").set_value(second).run()
    assert not at.exception, at.exception
    assert "72.0%" in at.metric[0].value and at.metric[1].value == "–"
    at.button(key="model_promote").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[second, "aliases"] == "production" and table.loc[first, "aliases"] == ""
    assert f"In production: model **{second}**" in at.caption[0].value
    assert list(at.selectbox(key="model_promote_pick").options) == [
        f"#{first} ggcnn · accuracy 55.0% (test_accuracy)"
    ]
    with OrchestratorClient(server.url) as api:
        api.login(*ADMIN)
        assert api.aliased_model().id == second

    # Annotators do not see the lead's pages at all.
    at = _page(server, monkeypatch, ANA, "app_pages/home.py")
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises on an unregistered page
        at.switch_page("app_pages/models.py").run()
        assert not at.exception
