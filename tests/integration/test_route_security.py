"""Every route that changes something, and every route that reads, demands credentials.

The tests read each FastAPI service's own OpenAPI document, so a route added later is
covered without editing this file. Only the login route may be called anonymously, and
only the health probes may be read anonymously: in particular the routes that serve image
bytes, figures and archives (`/images/...`, exports, campaign figures and reports) refuse
anonymous and forged callers, on real data that a signed-in user does get.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from regrasp.auth import issue_token, new_api_key
from regrasp.settings import Settings

MUTATING = {"post", "put", "patch", "delete"}
#: Routes that must answer without credentials, by design.
PUBLIC = {("post", "/auth/login")}
#: Reads that must answer without credentials: the health probes.
PUBLIC_READS = {"/healthz", "/readyz"}
SECRET = "route-security-secret-" + "x" * 20


def _apps(tmp_path, url, store_url):
    from services.orchestrator.app import create_app as orchestrator
    from services.trainer.app import create_app as trainer

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        object_store_url=store_url,
        secret_key=SECRET,
        service_api_key=SECRET + "-service",
        admin_password="lead-password-1",
    )
    return {"orchestrator": orchestrator(settings), "trainer": trainer(settings)}


@pytest.mark.parametrize("service", ["orchestrator", "trainer"])
def test_every_mutating_route_refuses_anonymous_and_forged_callers(
    service, tmp_path, sqlite_url, file_store_url
):
    app = _apps(tmp_path, sqlite_url, file_store_url)[service]
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        checked = 0
        for path, methods in spec["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            for method in methods:
                if method not in MUTATING or (method, path) in PUBLIC:
                    continue
                for headers in ({}, {"Authorization": "Bearer forged.token"}):
                    r = client.request(method.upper(), concrete, json={}, headers=headers)
                    assert r.status_code == 401, (service, method, path, headers, r.text)
                    assert r.json()["detail"], (service, method, path)
                checked += 1
    # The enumeration itself must have found the service's write routes.
    assert checked >= (20 if service == "orchestrator" else 2), checked


def test_annotators_cannot_reach_admin_routes(tmp_path, sqlite_url, file_store_url):
    app = _apps(tmp_path, sqlite_url, file_store_url)["orchestrator"]
    with TestClient(app) as client:
        token = client.post(
            "/auth/login", data={"username": "admin", "password": "lead-password-1"}
        ).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        body = {"username": "ana", "password": "annotate-1", "role": "annotator"}
        assert client.post("/users", json=body, headers=admin).status_code == 201
        token = client.post(
            "/auth/login", data={"username": "ana", "password": "annotate-1"}
        ).json()["access_token"]
        ana = {"Authorization": f"Bearer {token}"}
        for method, path, payload in [
            ("POST", "/users", {"username": "eve", "password": "x" * 10, "role": "admin"}),
            ("POST", "/api-keys", {"name": "mine"}),
            ("GET", "/api-keys", None),
            ("POST", "/datasets/import", {"name": "d", "source": {"kind": "synthetic"}}),
            ("POST", "/rounds", {"dataset_id": 1}),
            ("POST", "/campaigns", {"dataset_id": 1}),
        ]:
            r = client.request(method, path, json=payload, headers=ana)
            assert r.status_code == 403, (method, path, r.status_code, r.text)


def _forged_headers() -> dict[str, dict[str, str]]:
    """Callers without a valid credential: none, garbage, a well-formed admin token signed
    with another key, an expired token signed with the right key, an unknown API key."""
    return {
        "anonymous": {},
        "garbage": {"Authorization": "Bearer forged.token"},
        "wrong key": {
            "Authorization": "Bearer "
            + issue_token("not-the-" + SECRET, subject="admin", role="admin", ttl_seconds=600)
        },
        "expired": {
            "Authorization": "Bearer "
            + issue_token(SECRET, subject="admin", role="admin", ttl_seconds=-1)
        },
        "unknown API key": {"Authorization": f"Bearer {new_api_key().key}"},
    }


def test_every_read_route_and_every_asset_refuses_anonymous_and_forged_callers(
    tmp_path, sqlite_url, file_store_url
):
    from regrasp.store.db import migrations
    from regrasp.store.db.engine import make_engine, session_scope
    from regrasp.store.db.tables import Image
    from regrasp.store.objects import open_store
    from regrasp.synthetic.generate import generate_dataset
    from regrasp.training_jobs import import_jacquard

    migrations.upgrade(sqlite_url)
    generate_dataset(tmp_path / "synth", images=2, size=64, workers=1, seed=3)
    engine = make_engine(sqlite_url)
    with session_scope(engine) as session:
        dataset = import_jacquard(
            session, open_store(file_store_url), tmp_path / "synth", name="assets"
        )
        image = session.query(Image).filter_by(dataset_id=dataset).first().id
    engine.dispose()
    # Real ids where the data exists, so the signed-in caller below gets the bytes.
    values = {"dataset_id": dataset, "image_id": image, "version": 0, "kind": "rgb"}
    values["name"] = "accuracy"

    app = _apps(tmp_path, sqlite_url, file_store_url)["orchestrator"]
    with TestClient(app) as client:
        token = client.post(
            "/auth/login", data={"username": "admin", "password": "lead-password-1"}
        ).json()["access_token"]
        signed_in = {"Authorization": f"Bearer {token}"}
        spec = client.get("/openapi.json").json()
        checked, assets = 0, {}
        for path, methods in spec["paths"].items():
            if "get" not in methods or path in PUBLIC_READS:
                continue
            concrete = re.sub(r"\{([^}]+)\}", lambda m: str(values.get(m[1], 1)), path)
            for who, headers in _forged_headers().items():
                r = client.get(concrete, headers=headers)
                assert r.status_code == 401, (who, path, r.status_code, r.text[:200])
                assert r.json()["detail"], (who, path)
                assert "WWW-Authenticate" in r.headers, (who, path)
            # Past the gate with a real credential: the route answers (200, or 404 for the
            # campaign that does not exist), never 401/403.
            r = client.get(concrete, headers=signed_in)
            assert r.status_code not in (401, 403), (path, r.status_code, r.text[:200])
            content = methods["get"]["responses"].get("200", {}).get("content", {})
            if set(content) - {"application/json"}:
                assets[path] = r
            checked += 1
    assert checked >= 20, checked
    # The routes that serve bytes were all found, and the ones with data served them.
    assert {
        "/images/{image_id}/{kind}",
        "/datasets/{dataset_id}/versions/{version}/export.zip",
        "/campaigns/{campaign_id}/figures/{name}.png",
        "/campaigns/{campaign_id}/report.zip",
        "/campaigns/{campaign_id}/table.csv",
    } <= set(assets), sorted(assets)
    image_bytes = assets["/images/{image_id}/{kind}"]
    assert image_bytes.status_code == 200 and image_bytes.content.startswith(b"\x89PNG")
    archive = assets["/datasets/{dataset_id}/versions/{version}/export.zip"]
    assert archive.status_code == 200 and archive.content.startswith(b"PK")
