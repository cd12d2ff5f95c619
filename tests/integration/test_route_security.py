"""Every route that changes something demands credentials: enumerated from OpenAPI.

The test reads each FastAPI service's own OpenAPI document, so a route added later is
covered without editing this file. Only the login route may be called anonymously.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from regrasp.settings import Settings

MUTATING = {"post", "put", "patch", "delete"}
#: Routes that must answer without credentials, by design.
PUBLIC = {("post", "/auth/login")}
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
