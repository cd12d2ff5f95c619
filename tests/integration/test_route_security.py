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

from regrasp.platform.auth import issue_token, new_api_key
from regrasp.platform.settings import Settings

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
    from regrasp.data.ingest import import_jacquard
    from regrasp.data.synthetic.generate import generate_dataset
    from regrasp.platform.store.db import migrations
    from regrasp.platform.store.db.engine import make_engine, session_scope
    from regrasp.platform.store.db.tables import Image
    from regrasp.platform.store.objects import open_store

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


# --- every route of every service against every key scope --------------------------------

#: The inference service's routes no credential is asked for (probes, metrics, docs).
INFERENCE_PUBLIC = {"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/"}


def _callers(sqlite_url):
    """Every kind of caller, by name: tokens of an admin and an annotator, the services'
    shared key, and one API key of each scope (a robot key made by an admin too)."""
    from regrasp.platform import accounts
    from regrasp.platform.store.db import migrations
    from regrasp.platform.store.db.engine import make_engine, session_scope

    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        lead = accounts.create_user(s, username="lead", password="lead-password-2", role="admin")
        ana = accounts.create_user(s, username="ana", password="annotate-1", role="annotator")
        keys = {
            "robot key (annotator's)": accounts.create_api_key(s, owner_id=ana.id, name="arm"),
            "robot key (admin's)": accounts.create_api_key(
                s, owner_id=lead.id, name="arm-2", scope="robot"
            ),
            "service-scope key": accounts.create_api_key(
                s, owner_id=lead.id, name="ci", scope="service"
            ),
            "admin-scope key": accounts.create_api_key(
                s, owner_id=lead.id, name="ops", scope="admin"
            ),
        }
        tokens = {
            "admin token": accounts.login_token(lead, secret=SECRET, ttl_seconds=600),
            "annotator token": accounts.login_token(ana, secret=SECRET, ttl_seconds=600),
        }
    engine.dispose()
    callers = {name: made.key for name, made in keys.items()}
    callers.update(tokens)
    callers["service key"] = SECRET + "-service"
    return {name: {"Authorization": f"Bearer {value}"} for name, value in callers.items()}


ROBOTS = ("robot key (annotator's)", "robot key (admin's)")


def _routes(spec: dict) -> list[tuple[str, str]]:
    return [(m, p) for p, methods in spec["paths"].items() for m in methods if m != "parameters"]


@pytest.mark.parametrize("service", ["orchestrator", "trainer"])
def test_robot_keys_are_refused_by_every_orchestrator_and_trainer_route(
    service, tmp_path, sqlite_url, file_store_url
):
    callers = _callers(sqlite_url)
    app = _apps(tmp_path, sqlite_url, file_store_url)[service]
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        checked = 0
        for method, path in _routes(spec):
            if (method, path) in PUBLIC or path in PUBLIC_READS:
                continue
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            for robot in ROBOTS:
                r = client.request(method.upper(), concrete, json={}, headers=callers[robot])
                assert r.status_code == 403, (robot, method, path, r.status_code, r.text[:200])
                assert "robot API key" in r.json()["detail"], (robot, path)
            checked += 1
    assert checked >= (40 if service == "orchestrator" else 4), checked


@pytest.mark.parametrize("service", ["orchestrator", "trainer"])
def test_service_and_admin_scope_keys_read_what_their_principals_read(
    service, tmp_path, sqlite_url, file_store_url
):
    """On every read route a `service` key is answered exactly like the services' shared
    key and an `admin` key exactly like its admin owner's token; an annotator's token is
    let past authentication everywhere (its role decides the rest)."""
    callers = _callers(sqlite_url)
    app = _apps(tmp_path, sqlite_url, file_store_url)[service]
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        checked = 0
        for method, path in _routes(spec):
            if method != "get" or path in PUBLIC_READS:
                continue
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            status = {
                who: client.get(concrete, headers=callers[who]).status_code
                for who in ("service key", "service-scope key", "admin token", "admin-scope key")
            }
            assert status["service-scope key"] == status["service key"], (path, status)
            assert status["admin-scope key"] == status["admin token"], (path, status)
            assert status["admin token"] not in (401, 403), (path, status)
            annotator = client.get(concrete, headers=callers["annotator token"]).status_code
            assert annotator != 401, (path, annotator)
            checked += 1
    assert checked >= (15 if service == "orchestrator" else 2), checked


def test_inference_routes_against_every_scope(tmp_path, sqlite_url, file_store_url):
    """Every route the inference service publishes, plus `GET /model`: a robot key reaches
    only `POST /predict` and `GET /model`; internal and admin routes refuse the rest."""
    from starlette.testclient import TestClient as StarletteClient

    from services.inference.service import InferenceService
    from tests.harness.inprocess import forget_bentoml_metrics

    callers = _callers(sqlite_url)
    env = {
        "REGRASP_DATA_DIR": str(tmp_path / "data"),
        "REGRASP_DATABASE_URL": sqlite_url,
        "REGRASP_OBJECT_STORE_URL": file_store_url,
        "REGRASP_SERVICE_API_KEY": SECRET + "-service",
        "REGRASP_SECRET_KEY": SECRET,
        "REGRASP_INFERENCE_DEVICE": "cpu",
    }
    forget_bentoml_metrics()  # this module's app may be the process's second
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("REGRASP_INFERENCE_MODEL_ID", raising=False)
        mp.delenv("REGRASP_INFERENCE_MODEL_NAME", raising=False)
        with StarletteClient(InferenceService.to_asgi(), raise_server_exceptions=False) as client:
            spec = client.get("/docs.json").json()
            routes = [(m, p) for m, p in _routes(spec) if p not in INFERENCE_PUBLIC]
            routes += [("get", "/model"), ("get", "/stats")]
            assert {("post", "/predict"), ("post", "/predict_stored")} <= set(routes), routes
            for method, path in routes:
                for who, headers in {**_forged_headers(), **callers}.items():
                    if path == "/forward_batch" and who in ("service key", "service-scope key"):
                        continue  # allowed: calling it would run BentoML's batch dispatcher
                    r = client.request(method.upper(), path, json={}, headers=headers)
                    expected = _inference_policy(who, method, path)
                    if expected == "allowed":
                        assert r.status_code not in (401, 403), (who, path, r.status_code, r.text)
                    else:
                        assert r.status_code == expected, (who, path, r.status_code, r.text)
                        assert r.json()["error"], (who, path)
    forget_bentoml_metrics()


def _inference_policy(who: str, method: str, path: str) -> int | str:
    """What the inference service must answer `who` on a route: 401, 403 or "allowed"."""
    if who in _forged_headers():
        return 401
    if who in ROBOTS:
        return "allowed" if (method, path) in {("post", "/predict"), ("get", "/model")} else 403
    if path == "/forward_batch":
        return "allowed" if who in ("service key", "service-scope key") else 403
    if path in ("/reload", "/warm"):
        return (
            "allowed"
            if who in ("service key", "service-scope key", "admin token", "admin-scope key")
            else 403
        )
    return "allowed"


@pytest.mark.parametrize("service", ["orchestrator", "trainer"])
def test_service_and_admin_scope_keys_write_what_their_principals_write(
    service, tmp_path, sqlite_url, file_store_url
):
    """On every mutating route a `service` key is answered exactly like the services'
    shared key and an `admin` key exactly like its admin owner's token. The calls name ids
    that do not exist and carry an empty JSON object, so an authorised call passes
    authentication and authorisation, then stops at 404 or 422 and changes nothing: the
    answers compare like for like. (A body that is not JSON would not do: it is refused
    with 422 before any credential is looked at.)"""
    callers = _callers(sqlite_url)
    app = _apps(tmp_path, sqlite_url, file_store_url)[service]
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        checked = 0
        for method, path in _routes(spec):
            if method not in MUTATING or (method, path) in PUBLIC:
                continue
            concrete = re.sub(r"\{[^}]+\}", "987654", path)
            status = {
                who: client.request(
                    method.upper(), concrete, json={}, headers=callers[who]
                ).status_code
                for who in ("service key", "service-scope key", "admin token", "admin-scope key")
            }
            assert status["service-scope key"] == status["service key"], (method, path, status)
            assert status["admin-scope key"] == status["admin token"], (method, path, status)
            assert status["admin token"] in (404, 422), (method, path, status)
            assert client.request(method.upper(), concrete, json={}).status_code == 401
            checked += 1
    assert checked >= (20 if service == "orchestrator" else 2), checked
