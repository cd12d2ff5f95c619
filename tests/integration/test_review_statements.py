"""The review queue's hot path stays a handful of SQL statements, on SQLite and PostgreSQL.

Counted with SQLAlchemy's `before_cursor_execute` event on the orchestrator's own engine,
through the real app: a claim is one statement on PostgreSQL (two on SQLite: renew a held
lease, else lease the next item) plus the item answer's two (context and labels); a
decision is three (read the item with its round and standing reviews, the
version swap, the review's INSERT); a fix adds the read of the image's labels, a change
the UPDATE of the replaced review. A refused decision writes nothing. The caller's token
is cached (`auth_cache_seconds`), so no request reads the user row.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from regrasp.platform.settings import Settings
from regrasp.workflows.campaigns.runner import CampaignRunner
from regrasp.workflows.imports import ImportRunner
from regrasp.workflows.rounds.runner import RoundRunner
from services.orchestrator.app import create_app
from tests.integration.test_review_api import _claim, _decide, _login, _round

ADMIN = ("lead", "lead-password-1")
ANA = ("ana", "annotator-password")

#: Statements per request, the budget this test holds (see the module docstring).
CLAIM = {"postgresql": 3, "sqlite": 4}
DECIDE = 3


@pytest.fixture
def api(tmp_path, database_url, file_store_url):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        object_store_url=file_store_url,
        secret_key="s" * 40,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
        auth_cache_seconds=3600,  # a slow test machine must not turn hits into misses
    )
    app = create_app(settings)
    with TestClient(app) as client:
        client.database_url = database_url
        client.engine = app.state.engine
        yield client


#: Thread-name prefixes of the app's workflow runners: "<noun>-runner" for the loop,
#: "<noun>_0", … for its pool (`WorkflowRunner.start`).
RUNNERS = tuple(
    f"{runner.noun}{sep}" for runner in (RoundRunner, CampaignRunner, ImportRunner) for sep in "-_"
)


@contextmanager
def counted(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL statements `engine` runs inside the block (first line of each), leaving
    out the app's background runners (a `WorkflowRunner`'s loop, "round-runner", and its
    pool, "round_0", …): they poll the same engine on their own clock, and on a loaded
    machine a poll landed inside the block."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _executemany) -> None:  # type: ignore[no-untyped-def]
        if threading.current_thread().name.startswith(RUNNERS):
            return
        if statement != "BEGIN IMMEDIATE":  # SQLite's transaction start (engine.py)
            seen.append(" ".join(statement.split())[:100])

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _writes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]


def test_claim_and_decide_are_a_handful_of_statements(api):
    admin = _login(api, ADMIN)
    body = {"username": ANA[0], "password": ANA[1], "role": "annotator"}
    assert api.post("/users", json=body, headers=admin).status_code == 201
    ana = _login(api, ANA)
    round_id = _round(api, images=6)
    _decide(api, ana, _claim(api, ana, round_id))  # the token's user is cached from here

    with counted(api.engine) as claim:
        item = _claim(api, ana, round_id)
    assert len(claim) <= CLAIM[api.engine.dialect.name], claim
    with counted(api.engine) as decide:
        r = _decide(api, ana, item)
    assert r.status_code == 201, r.text
    assert len(decide) <= DECIDE, decide
    assert not any("SAVEPOINT" in s for s in decide), decide

    # Stale: the same decision again is refused with 409 and writes nothing.
    with counted(api.engine) as stale:
        r = _decide(api, ana, item)
    assert r.status_code == 409, r.text
    assert _writes(stale) == [], stale

    # A fix reads the image's labels once more; a change supersedes the old review.
    item = _claim(api, ana, round_id)
    label = item["labels"][0]["grasp_id"]
    with counted(api.engine) as fix:
        r = _decide(api, ana, item, "fix", removed_grasp_ids=[label])
    assert r.status_code == 201, r.text
    assert len(fix) <= DECIDE + 1, fix
    with counted(api.engine) as change:
        r = api.put(
            f"/review/items/{item['id']}/decision",
            json={
                "item_version": item["version"] + 1,
                "decision": "true_negative",
                "seconds_taken": 1,
            },
            headers=ana,
        )
    assert r.status_code == 200, r.text
    assert len(change) <= DECIDE + 1, change
    assert len(_writes(change)) == 3, change  # swap, supersede, insert
