"""The review API through FastAPI's TestClient on SQLite and PostgreSQL.

Claim order and leases, heartbeats, expiry, skip and release, decisions with their item
version (stale → 409), undo and change, double review → adjudication by an admin, stats
with Cohen's kappa, and who may do what (401 without a token, 403 for annotators on admin
routes and for the shared service key on reviews).
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Prediction, ReviewItem
from services.orchestrator.app import create_app
from tests.harness.seeders import labelled_dataset, seed_round

ADMIN = ("lead", "lead-password-1")
ANA = ("ana", "annotator-password")
BOB = ("bob", "annotator-password")
SECRET = "s" * 40
SERVICE_KEY = "service-key-" + "k" * 30


@pytest.fixture
def api(tmp_path, database_url, file_store_url):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        object_store_url=file_store_url,
        secret_key=SECRET,
        service_api_key=SERVICE_KEY,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
    )
    with TestClient(create_app(settings)) as client:
        client.database_url = database_url
        yield client


def _login(client: TestClient, user: tuple[str, str]) -> dict[str, str]:
    r = client.post("/auth/login", data={"username": user[0], "password": user[1]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def people(api) -> dict[str, dict[str, str]]:
    admin = _login(api, ADMIN)
    for name, password in (ANA, BOB):
        body = {"username": name, "password": password, "role": "annotator"}
        assert api.post("/users", json=body, headers=admin).status_code == 201
    return {"admin": admin, "ana": _login(api, ANA), "bob": _login(api, BOB)}


def _round(client: TestClient, *, images: int = 4, double: float = 0.0) -> int:
    """A dataset of `images` images with 3 labels each and a round open for review."""
    engine = make_engine(client.database_url)
    try:
        with session_scope(engine) as session:
            rng = np.random.default_rng(0)
            grasps = np.column_stack(
                [
                    rng.uniform(20, 44, (3 * images, 2)),
                    rng.uniform(-30, 30, 3 * images),
                    np.full(3 * images, 12.0),
                    np.full(3 * images, 6.0),
                ]
            )
            dataset, _ = labelled_dataset(
                session,
                name=f"d{time.monotonic_ns()}",
                image_names=[f"img{i}" for i in range(images)],
                object_names=[f"obj{i % 2}" for i in range(images)],
                size=64,
                owners=np.repeat(np.arange(images), 3),
                grasps=grasps,
            )
            return seed_round(session, dataset_id=dataset, double_review_fraction=double)
    finally:
        engine.dispose()


def _claim(client, headers, round_id, **body) -> dict | None:
    r = client.post(f"/rounds/{round_id}/review/claim", json=body or None, headers=headers)
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def _decide(client, headers, item, decision="true_negative", **extra):
    body = {"item_version": item["version"], "decision": decision, "seconds_taken": 1.5}
    return client.post(f"/review/items/{item['id']}/decision", json=body | extra, headers=headers)


def _item_count(client, round_id) -> int:
    engine = make_engine(client.database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).where(ReviewItem.round_id == round_id))
    finally:
        engine.dispose()


def test_claims_follow_priority_one_lease_per_item(api, people):
    round_id = _round(api)
    n = _item_count(api, round_id)
    assert n >= 2
    a = _claim(api, people["ana"], round_id)
    b = _claim(api, people["bob"], round_id)
    assert a["id"] != b["id"]
    assert a["priority"] >= b["priority"]
    assert a["state"] == "leased" and a["lease_owner_id"] != b["lease_owner_id"]
    # The item carries what the screen draws: numbered predictions and labels with ids.
    assert len(a["predictions"]) == 3 and [p["index"] for p in a["predictions"]] == [0, 1, 2]
    assert len(a["labels"]) == 3 and all(len(g["grasp"]) == 5 for g in a["labels"])
    assert a["image"].startswith("img") and a["lease_expires_at"] is not None
    # Claiming again gives back the held item (a reload does not lose it).
    assert _claim(api, people["ana"], round_id)["id"] == a["id"]
    # upcoming previews the next ones without leasing them.
    r = api.get(f"/rounds/{round_id}/review/upcoming?limit=5", headers=people["ana"])
    assert r.status_code == 200
    previews = r.json()
    assert a["id"] not in {p["id"] for p in previews} and b["id"] not in {p["id"] for p in previews}
    assert all(p["state"] == "pending" for p in previews)


def test_the_item_says_how_far_the_labels_reach_as_the_round_scored_it(api, people):
    """The screen's "Why this image" line reads the stored score's coverage and grasp
    coverage from the item: both come back as the round stored them."""
    round_id = _round(api)
    engine = make_engine(api.database_url)
    try:
        with session_scope(engine) as session:
            stored = {
                "quality": 0.2,
                "kind": "missing",
                "missing": 0.2,
                "badly_placed": 1.0,
                "wrong_action": 1.0,
                "unmatched": [],
                "suspect_labels": [],
                "coverage": 0.97,
                "grasp_coverage": 0.41,
            }
            session.execute(
                sa.update(Prediction).where(Prediction.round_id == round_id).values(quality=stored)
            )
    finally:
        engine.dispose()
    item = _claim(api, people["ana"], round_id)
    assert item["quality"]["kind"] == "missing"
    assert item["quality"]["coverage"] == 0.97 and item["quality"]["grasp_coverage"] == 0.41


class _LosesFirstClaimAnswer(httpx.BaseTransport):
    """Forwards to the app; the first claim's answer is lost after the server acted on it
    (a connection reset on the way back, as when a keep-alive socket closes under it)."""

    def __init__(self, app_transport: httpx.BaseTransport) -> None:
        self.app = app_transport
        self.lost: list[dict] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.app.handle_request(request)
        if request.url.path.endswith("/review/claim") and not self.lost:
            response.read()
            self.lost.append(response.json())
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_a_claim_whose_answer_was_lost_is_sent_again_and_gets_the_same_lease(api, people):
    round_id = _round(api)
    transport = _LosesFirstClaimAnswer(api._transport)
    token = people["ana"]["Authorization"].removeprefix("Bearer ")
    with OrchestratorClient(
        str(api.base_url), credential=token, transport=transport, backoff=0
    ) as client:
        item = client.claim_next(round_id)
    assert item is not None and transport.lost and item.id == transport.lost[0]["id"]
    engine = make_engine(api.database_url)
    try:
        with session_scope(engine) as session:
            leased = session.scalars(
                sa.select(ReviewItem.id).where(
                    ReviewItem.round_id == round_id, ReviewItem.lease_owner_id.is_not(None)
                )
            ).all()
    finally:
        engine.dispose()
    assert leased == [item.id]  # one lease, the one the annotator now sees


def test_heartbeat_extends_and_expired_leases_return_to_the_pool(api, people):
    round_id = _round(api, images=2)
    a = _claim(api, people["ana"], round_id, lease_seconds=0.5)
    r = api.post(
        f"/review/items/{a['id']}/heartbeat", json={"lease_seconds": 600}, headers=people["ana"]
    )
    assert r.status_code == 200 and r.json()["lease_expires_at"] > a["lease_expires_at"]
    # bob cannot heartbeat ana's item
    r = api.post(f"/review/items/{a['id']}/heartbeat", headers=people["bob"])
    assert r.status_code == 409
    api.post(
        f"/review/items/{a['id']}/heartbeat", json={"lease_seconds": 0.3}, headers=people["ana"]
    )
    time.sleep(0.6)
    # ana's lease lapsed: bob's claims reach her item once the other one is his.
    first = _claim(api, people["bob"], round_id)
    assert _decide(api, people["bob"], first).status_code == 201
    second = _claim(api, people["bob"], round_id)
    assert a["id"] in {first["id"], second["id"]}


def test_stale_version_is_409_and_undo_then_change(api, people):
    round_id = _round(api, images=3)
    ana = people["ana"]
    item = _claim(api, ana, round_id)
    stale = dict(item, version=item["version"] - 1)
    assert _decide(api, ana, stale).status_code == 409
    r = _decide(api, ana, item, "missing_label", accepted_predictions=[1, 2])
    assert r.status_code == 201, r.text
    review = r.json()
    assert review["accepted_prediction_indices"] == [1, 2] and review["seconds_taken"] == 1.5
    # The same version again is stale now: never a silent overwrite.
    assert _decide(api, ana, item, "annotation_error").status_code == 409
    nxt = _claim(api, ana, round_id)
    assert nxt["id"] != item["id"]

    r = api.post(f"/rounds/{round_id}/review/undo", headers=ana)
    assert r.status_code == 200, r.text
    undone = r.json()
    assert undone["item"]["id"] == item["id"] and undone["undone_review_id"] == review["id"]
    assert undone["item"]["state"] == "leased" and undone["item"]["my_review"] is None
    r = _decide(api, ana, undone["item"], "fix", removed_grasp_ids=[item["labels"][0]["grasp_id"]])
    assert r.status_code == 201, r.text
    # Change one's own decision with PUT, on the item's current version.
    current = api.get(f"/review/items/{item['id']}", headers=ana).json()
    assert current["my_review"]["decision"] == "fix"
    body = {"item_version": current["version"], "decision": "true_negative", "seconds_taken": 0}
    r = api.put(f"/review/items/{item['id']}/decision", json=body, headers=ana)
    assert r.status_code == 200 and r.json()["decision"] == "true_negative"
    history = api.get(f"/review/items/{item['id']}/reviews", headers=ana).json()
    assert [h["superseded"] for h in history] == [True, True, False]
    # Nothing of ana's is visible to bob.
    assert api.get(f"/review/items/{item['id']}/reviews", headers=people["bob"]).json() == []


def test_decisions_must_fit_their_kind(api, people):
    round_id = _round(api, images=2)
    item = _claim(api, people["ana"], round_id)
    assert _decide(api, people["ana"], item, "missing_label").status_code == 422
    assert _decide(api, people["ana"], item, "fix").status_code == 422
    r = _decide(api, people["ana"], item, "missing_label", accepted_predictions=[7])
    assert r.status_code == 422 and "do not exist" in r.json()["detail"]
    assert _decide(api, people["ana"], item, "maybe").status_code == 422


def test_skip_and_release(api, people):
    round_id = _round(api, images=3)
    ana = people["ana"]
    first = _claim(api, ana, round_id)
    r = api.post(f"/review/items/{first['id']}/skip", headers=ana)
    assert r.status_code == 200 and r.json()["state"] == "pending"
    second = _claim(api, ana, round_id)
    assert second["id"] != first["id"]
    assert api.post(f"/review/items/{second['id']}/release", headers=ana).status_code == 200
    # Released: bob can take it; skipped: still offered to others at its priority.
    bob_first = _claim(api, people["bob"], round_id)
    assert bob_first["id"] == first["id"]
    assert api.post(f"/review/items/{second['id']}/release", headers=ana).status_code == 409


def test_double_review_disagreement_goes_to_an_admin(api, people):
    round_id = _round(api, images=2, double=1.0)
    ana, bob, admin = people["ana"], people["bob"], people["admin"]
    a = _claim(api, ana, round_id)
    assert a["required_reviews"] == 2
    assert _decide(api, ana, a, "true_negative").status_code == 201
    b = _claim(api, bob, round_id)
    if b["id"] != a["id"]:  # bob got the other item first; decide it, then take ana's
        assert _decide(api, bob, b, "true_negative").status_code == 201
        b = _claim(api, bob, round_id)
    assert b["id"] == a["id"]
    assert _decide(api, bob, b, "annotation_error").status_code == 201
    assert api.get(f"/review/items/{a['id']}", headers=admin).json()["state"] == "adjudication"

    assert api.get(f"/rounds/{round_id}/review/adjudication", headers=ana).status_code == 403
    r = api.get(f"/rounds/{round_id}/review/adjudication", headers=admin)
    assert r.status_code == 200
    cases = r.json()
    assert [c["item"]["id"] for c in cases] == [a["id"]]
    assert sorted(x["decision"] for x in cases[0]["reviews"]) == [
        "annotation_error",
        "true_negative",
    ]
    assert sorted(cases[0]["usernames"].values()) == ["ana", "bob"]
    item = cases[0]["item"]
    body = {"item_version": item["version"], "decision": "annotation_error", "seconds_taken": 3}
    r = api.post(f"/review/items/{a['id']}/resolve", json=body, headers=ana)
    assert r.status_code == 403
    r = api.post(f"/review/items/{a['id']}/resolve", json=body, headers=admin)
    assert r.status_code == 201 and r.json()["adjudication"] is True
    assert api.get(f"/rounds/{round_id}/review/adjudication", headers=admin).json() == []

    stats = api.get(f"/rounds/{round_id}/review/stats", headers=admin).json()
    assert stats["double_reviewed"] >= 1 and stats["adjudication"] == 0
    assert stats["decision_mix"]["annotation_error"] >= 1
    assert {a["username"] for a in stats["annotators"]} >= {"ana", "bob"}
    own = api.get(f"/rounds/{round_id}/review/stats", headers=ana).json()
    assert [a["username"] for a in own["annotators"]] == ["ana"]
    assert own["items"] == stats["items"]


def test_authentication_and_roles(api, people):
    round_id = _round(api, images=2)
    assert api.post(f"/rounds/{round_id}/review/claim").status_code == 401
    assert api.get(f"/rounds/{round_id}/review/stats").status_code == 401
    service = {"Authorization": f"Bearer {SERVICE_KEY}"}
    r = api.post(f"/rounds/{round_id}/review/claim", headers=service)
    assert r.status_code == 403 and "user" in r.json()["detail"]
    assert api.post("/rounds/999999/review/claim", headers=people["ana"]).status_code == 404


def test_empty_queue_answers_204(api, people):
    round_id = _round(api, images=1)
    item = _claim(api, people["ana"], round_id)
    assert item is not None
    assert _decide(api, people["ana"], item).status_code == 201
    assert _claim(api, people["ana"], round_id) is None


def test_a_second_reviewer_sees_the_first_ones_drawn_grasps_and_keeps_them(api, people):
    """Drawn grasps over HTTP: the decision carries them, the second reviewer of a double
    review is shown them as `proposed_grasps`, and keeping them is agreeing."""
    round_id = _round(api, images=1, double=1.0)
    ana, bob = people["ana"], people["bob"]
    drawn = [[30.0, 32.0, 10.0, 14.0, 6.0]]
    a = _claim(api, ana, round_id)
    assert a["proposed_grasps"] == []
    r = _decide(api, ana, a, "missing_label", drawn_grasps=drawn)
    assert r.status_code == 201 and r.json()["drawn_grasps"] == drawn
    b = _claim(api, bob, round_id)
    assert b["id"] == a["id"] and b["proposed_grasps"] == drawn
    mine = api.get(f"/review/items/{a['id']}", headers=ana).json()
    assert mine["my_review"]["drawn_grasps"] == drawn and mine["proposed_grasps"] == []
    hand = [[31.0, 31.0, 14.0, 13.0, 6.0]]  # the same grasp, another hand
    assert _decide(api, bob, b, "missing_label", drawn_grasps=hand).status_code == 201
    assert api.get(f"/review/items/{a['id']}", headers=ana).json()["state"] == "decided"


@pytest.mark.parametrize(
    ("drawn", "status", "says"),
    [
        ([[1.0, 2.0, 3.0, 4.0]], 422, "drawn_grasps"),
        ([[1.0, 2.0, 3.0, 4.0, "x"]], 422, "drawn_grasps"),
        ([[10.0, 10.0, 0.0, 8.0, 4.0]] * 51, 422, "drawn_grasps"),
        ([[70.0, 10.0, 0.0, 8.0, 4.0]], 422, "outside the 64x64 image"),
        ([[10.0, 10.0, 0.0, -8.0, 4.0]], 422, "positive"),
    ],
)
def test_bad_drawn_grasps_get_a_422_and_change_nothing(api, people, drawn, status, says):
    round_id = _round(api, images=1)
    item = _claim(api, people["ana"], round_id)
    r = _decide(api, people["ana"], item, "missing_label", drawn_grasps=drawn)
    assert r.status_code == status and says in r.text, r.text
    after = api.get(f"/review/items/{item['id']}", headers=people["ana"]).json()
    assert (after["version"], after["state"], after["my_review"]) == (
        item["version"],
        "leased",
        None,
    )
