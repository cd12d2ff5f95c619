"""The orchestrator API through FastAPI's TestClient, on a real migrated database and store.

Auth (login, expiry, rate limit, roles, API keys), imports (samples, bad archives,
conflicts), versions (diff, rollback), exports (zip download, object store) and images.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from regrasp.data import versions as V
from regrasp.grasp.rectangles import parse_jacquard, read_jacquard
from regrasp.platform.auth import issue_token
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import ApiKey, Base, Image
from services.orchestrator.app import create_app

ADMIN = ("lead", "lead-password-1")
ANNOTATOR = ("ana", "annotator-password")
SECRET = "x" * 40


def _settings(tmp_path: Path, database_url: str, store_url: str, **extra) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        object_store_url=store_url,
        secret_key=SECRET,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
        import_workers=2,
        **extra,
    )


@pytest.fixture
def make_client(tmp_path, database_url, file_store_url):
    """Start an app (lifespan included) with optional settings overrides; closed after."""
    opened = []

    def make(store_url: str | None = None, **extra) -> TestClient:
        settings = _settings(tmp_path, database_url, store_url or file_store_url, **extra)
        client = TestClient(create_app(settings))
        client.__enter__()
        client.app.state.test_settings = settings
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_client) -> TestClient:
    return make_client()


def _login(client: TestClient, user: tuple[str, str]) -> dict[str, str]:
    r = client.post("/auth/login", data={"username": user[0], "password": user[1]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _annotator(client: TestClient, admin: dict[str, str]) -> dict[str, str]:
    body = {"username": ANNOTATOR[0], "password": ANNOTATOR[1], "role": "annotator"}
    assert client.post("/users", json=body, headers=admin).status_code == 201
    return _login(client, ANNOTATOR)


def _wait(client: TestClient, headers, import_id: int) -> dict:
    for _ in range(1200):
        status = client.get(f"/datasets/imports/{import_id}", headers=headers).json()
        if status["state"] in ("succeeded", "failed"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"import {import_id} did not finish: {status}")


def _import(client: TestClient, headers, name: str, source: dict, **extra) -> dict:
    body = {"name": name, "source": source, **extra}
    r = client.post("/datasets/import", json=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "queued"
    return _wait(client, headers, r.json()["id"])


def _counts(client: TestClient) -> dict[str, int]:
    engine = client.app.state.engine
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for name, t in Base.metadata.tables.items()
            if name not in ("imports", "login_failures", "users", "api_keys")
        }


# --- auth ------------------------------------------------------------------------------------


def test_login_token_and_expiry(api):
    r = api.post("/auth/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    body = r.json()
    assert r.status_code == 200 and body["token_type"] == "bearer"
    assert body["expires_in"] == api.app.state.test_settings.token_ttl_seconds
    me = api.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["username"] == ADMIN[0] and me.json()["role"] == "admin"

    expired = issue_token(SECRET, subject=str(me.json()["id"]), role="admin", ttl_seconds=-1)
    r = api.get("/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert r.json() == {"error": "token expired", "detail": "token expired"}
    assert r.headers["www-authenticate"] == "Bearer"
    forged = issue_token("another-secret" * 3, subject="1", role="admin", ttl_seconds=60)
    assert api.get("/users/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert api.get("/users/me").status_code == 401


def test_wrong_password_and_rate_limit(make_client):
    api = make_client(login_max_failures=3, login_failure_window_seconds=60)
    for _ in range(3):
        r = api.post("/auth/login", data={"username": ADMIN[0], "password": "wrong-password"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong username or password"
    # Locked for this name and client, even with the right password...
    r = api.post("/auth/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "too many failed logins" in r.json()["detail"]
    # ...but not for other names.
    r = api.post("/auth/login", data={"username": "someone", "password": "whatever-pass"})
    assert r.status_code == 401


def test_roles_annotators_cannot_administer(api):
    admin = _login(api, ADMIN)
    ana = _annotator(api, admin)
    assert api.get("/users/me", headers=ana).json()["role"] == "annotator"
    forbidden = [
        ("POST", "/users", {"username": "eve", "password": "eve-password", "role": "admin"}),
        ("GET", "/users", None),
        ("POST", "/api-keys", {"name": "robot"}),
        ("GET", "/api-keys", None),
        ("POST", "/datasets/import", {"name": "d", "source": {"kind": "jacquard", "path": "/x"}}),
        ("POST", "/datasets/1/rollback", {"to": 0}),
        ("POST", "/datasets/1/versions/0/export", {}),
    ]
    for method, path, body in forbidden:
        r = api.request(method, path, json=body, headers=ana)
        assert r.status_code == 403, (method, path, r.text)
        assert isinstance(r.json()["detail"], str)
    assert [u["username"] for u in api.get("/users", headers=admin).json()] == [
        ADMIN[0],
        ANNOTATOR[0],
    ]
    dup = {"username": ANNOTATOR[0], "password": "other-password", "role": "annotator"}
    assert api.post("/users", json=dup, headers=admin).status_code == 409


def test_api_keys_shown_once_stored_hashed_and_revocable(api):
    admin = _login(api, ADMIN)
    r = api.post("/api-keys", json={"name": "ur5-cell"}, headers=admin)
    assert r.status_code == 201
    created = r.json()
    key = created["key"]
    assert key.startswith("rgk_") and created["prefix"] in key

    listed = api.get("/api-keys", headers=admin).json()
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert listed[0]["scope"] == "robot"
    with session_scope(api.app.state.engine) as s:
        row = s.get(ApiKey, created["id"])
        assert key not in (row.key_hash, row.prefix, row.name)

    assert created["scope"] == "robot"  # the default: least privilege, whoever made it
    robot = {"Authorization": f"Bearer {key}"}
    assert api.get("/users/me", headers=robot).status_code == 403  # robots only predict
    ops = api.post("/api-keys", json={"name": "ops", "scope": "admin"}, headers=admin).json()
    ops_headers = {"Authorization": f"Bearer {ops['key']}"}
    assert api.get("/users/me", headers=ops_headers).json()["username"] == ADMIN[0]
    assert api.delete(f"/api-keys/{ops['id']}", headers=admin).status_code == 204
    assert api.get("/users/me", headers=ops_headers).status_code == 401
    assert api.delete(f"/api-keys/{created['id']}", headers=admin).status_code == 204
    assert api.get("/users/me", headers=robot).status_code == 401
    assert api.delete("/api-keys/999", headers=admin).status_code == 404


def test_openapi_types_every_response_and_errors_are_details(api):
    spec = api.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            ok = [c for c in op["responses"] if c.startswith("2")]
            # One success status with a typed body; a "nothing left" 204 may stand beside it.
            typed = [c for c in ok if c != "204"]
            assert ok and len(typed) <= 1, (path, method)
            for code in typed:
                assert op["responses"][code].get("content"), (path, method)
            for code, response in op["responses"].items():
                if code.startswith("4"):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorPublic"), (path, method, code)
    admin = _login(api, ADMIN)
    r = api.post("/users", json={"username": "x"}, headers=admin)
    assert r.status_code == 422 and "password" in r.json()["detail"]
    assert api.get("/datasets/42", headers=admin).json()["detail"] == "dataset 42 does not exist"


# --- imports, versions, exports, images --------------------------------------------------------


def test_import_export_roundtrip_versions_and_images(api, jacquard_samples):
    admin = _login(api, ADMIN)
    ana = _annotator(api, admin)
    status = _import(
        api,
        admin,
        "samples",
        {"kind": "jacquard", "path": str(jacquard_samples)},
        split={"kind": "object", "seed": 1, "test_fraction": 0.3},
    )
    assert status["state"] == "succeeded", status
    originals = sorted(jacquard_samples.glob("*/*_grasps.txt"))
    assert status["uploaded"] == 5 * len(originals) and status["skipped"] == 0
    assert status["done"] == status["total"] == len(originals)

    datasets = api.get("/datasets", headers=ana).json()
    grasps = sum(len(read_jacquard(p)) for p in originals)
    assert [(d["name"], d["image_count"], d["grasp_count"]) for d in datasets] == [
        ("samples", len(originals), grasps)
    ]
    dataset_id = datasets[0]["id"]
    versions = api.get(f"/datasets/{dataset_id}/versions", headers=ana).json()
    assert [(v["number"], v["image_count"]) for v in versions] == [(0, len(originals))]

    # Images are served to signed-in users, byte for byte.
    with session_scope(api.app.state.engine) as s:
        image = s.scalars(sa.select(Image).order_by(Image.id)).first()
        obj = image.rgb_key.split("/")[2]
    r = api.get(f"/images/{image.id}/rgb", headers=ana)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (jacquard_samples / obj / f"{image.name}_RGB.png").read_bytes()
    depth = api.get(f"/images/{image.id}/depth", headers=ana)
    expected = (jacquard_samples / obj / f"{image.name}_perfect_depth.tiff").read_bytes()
    assert depth.content == expected
    assert api.get(f"/images/{image.id}/rgb").status_code == 401

    # Zip download: every file of the samples comes back.
    r = api.get(f"/datasets/{dataset_id}/versions/0/export.zip", headers=ana)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    for path in sorted(jacquard_samples.glob("*/*")):
        if path.suffix not in (".png", ".tiff", ".txt") or path.parent == jacquard_samples:
            continue
        data = archive.read(f"samples-v0/{path.parent.name}/{path.name}")
        if path.name.endswith("_grasps.txt"):
            np.testing.assert_array_equal(parse_jacquard(data.decode()), read_jacquard(path))
        else:
            assert data == path.read_bytes(), path.name

    # The same name again is refused before anything runs.
    again = {"name": "samples", "source": {"kind": "jacquard", "path": str(jacquard_samples)}}
    r = api.post("/datasets/import", json=again, headers=admin)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_diff_and_rollback_through_the_api(api, jacquard_samples, tmp_path):
    admin = _login(api, ADMIN)
    ana = _annotator(api, admin)
    src = tmp_path / "two"
    for folder in sorted(p for p in jacquard_samples.iterdir() if p.is_dir())[:2]:
        (src / folder.name).mkdir(parents=True)
        for f in folder.iterdir():
            (src / folder.name / f.name).symlink_to(f)
    assert _import(api, admin, "two", {"kind": "jacquard", "path": str(src)})["state"] == (
        "succeeded"
    )
    dataset_id = api.get("/datasets", headers=admin).json()[0]["id"]
    # Version 1 made by the library, as a round will make it.
    with session_scope(api.app.state.engine) as s:
        labels = V.labels_at(s, dataset_id, 0)
        ids = np.unique(labels.image_ids)
        V.create_version(
            s,
            dataset_id,
            0,
            V.ChangeSet(
                remove_image_ids=[int(ids[0])],
                remove_image_reasons="annotation error",
                remove_grasp_ids=labels.grasp_ids[labels.image_ids == ids[1]][:3],
                remove_grasp_reasons="fix",
                add_image_ids=[int(ids[2])],
                add_grasps=[[300.0, 310.0, -45.0, 50.0, 20.0]],
                add_source="prediction",
                add_notes="missing label",
            ),
        )

    d = api.get(f"/datasets/{dataset_id}/diff", params={"from": 0, "to": 1}, headers=ana).json()
    assert (d["added_grasp_count"], len(d["removed_images"])) == (1, 1)
    removed_with_image = (labels.image_ids == ids[0]).sum()
    assert d["removed_grasp_count"] == 3 + removed_with_image
    assert d["added_grasps"][0]["source"] == "prediction"
    assert d["added_grasps"][0]["note"] == "missing label"
    assert d["added_grasps"][0]["grasp"] == [300.0, 310.0, -45.0, 50.0, 20.0]
    assert {g["removed_reason"] for g in d["removed_grasps"]} == {
        "fix",
        "image removed: annotation error",
    }
    assert d["removed_images"][0]["image_id"] == int(ids[0])

    assert (
        api.post(f"/datasets/{dataset_id}/rollback", json={"to": 0}, headers=ana).status_code == 403
    )
    r = api.post(f"/datasets/{dataset_id}/rollback", json={"to": 0}, headers=admin)
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert (v2["number"], v2["parent_number"], v2["message"]) == (2, 1, "rollback to v0")
    versions = api.get(f"/datasets/{dataset_id}/versions", headers=ana).json()
    assert (versions[2]["image_count"], versions[2]["grasp_count"]) == (
        versions[0]["image_count"],
        versions[0]["grasp_count"],
    )
    back = api.get(f"/datasets/{dataset_id}/diff", params={"from": 0, "to": 2}, headers=ana).json()
    # Restored labels are new rows (history is append-only), equal in value to what v1 closed.
    assert back["added_grasp_count"] == back["removed_grasp_count"] == 3 + removed_with_image
    assert sorted(g["grasp"] for g in back["added_grasps"]) == sorted(
        g["grasp"] for g in back["removed_grasps"]
    )
    assert back["added_images"] == back["removed_images"] == []
    missing = api.get(f"/datasets/{dataset_id}/diff", params={"from": 0, "to": 9}, headers=ana)
    assert missing.status_code == 404
    r = api.post(f"/datasets/{dataset_id}/rollback", json={"to": 7}, headers=admin)
    assert r.status_code == 404


def _zip_slip_archive(samples: Path, dest: Path) -> Path:
    folder = sorted(p for p in samples.iterdir() if p.is_dir())[0]
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"J/{folder.name}/{f.name}")
        zf.writestr("J/../../etc/cron.d/evil", "* * * * * root true\n")
    return dest


def test_bad_archive_fails_naming_the_member_and_leaves_nothing(api, jacquard_samples, tmp_path):
    admin = _login(api, ADMIN)
    before = _counts(api)
    archive = _zip_slip_archive(jacquard_samples, tmp_path / "evil.zip")
    status = _import(api, admin, "evil", {"kind": "jacquard", "path": str(archive)})
    assert status["state"] == "failed" and "../../etc/cron.d/evil" in status["error"]
    assert _counts(api) == before
    assert list(api.app.state.store.list("")) == []
    # The name is free again: a good import under it succeeds.
    folder = sorted(p for p in jacquard_samples.iterdir() if p.is_dir())[0]
    assert (
        _import(api, admin, "evil", {"kind": "jacquard", "path": str(folder.parent)})["state"]
        == "succeeded"
    )


def test_import_roots_and_bad_requests_refused(make_client, jacquard_samples, tmp_path):
    api = make_client(import_roots=[tmp_path / "allowed"])
    admin = _login(api, ADMIN)
    body = {"name": "s", "source": {"kind": "jacquard", "path": str(jacquard_samples)}}
    r = api.post("/datasets/import", json=body, headers=admin)
    assert r.status_code == 422 and "REGRASP_IMPORT_ROOTS" in r.json()["detail"]
    for bad in (
        {"name": "../x", "source": {"kind": "jacquard", "path": "/x"}},
        {"name": "ok", "source": {"kind": "nope"}},
        {"name": "ok", "source": {"kind": "synthetic", "images": 0}},
        {"name": "ok", "source": {"kind": "jacquard", "path": "/x"}, "split": {"test_fraction": 1}},
    ):
        r = api.post("/datasets/import", json=bad, headers=admin)
        assert r.status_code == 422 and isinstance(r.json()["detail"], str), bad
    assert api.get("/datasets/imports", headers=admin).json() == []


def test_synthetic_import_on_s3_and_export_to_the_store(make_client, s3_server, s3_store_url):
    api = make_client(
        store_url=s3_store_url,
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
    )
    admin = _login(api, ADMIN)
    source = {"kind": "synthetic", "images": 6, "size": 96, "seed": 4, "corrupt_fraction": 0.5}
    status = _import(api, admin, "synth", source, split={"kind": "image", "test_fraction": 0.5})
    assert status["state"] == "succeeded", status
    dataset = api.get("/datasets", headers=admin).json()[0]
    assert dataset["image_count"] == 6 and dataset["grasp_count"] > 0
    r = api.post(
        f"/datasets/{dataset['id']}/versions/0/export", json={"prefix": "release"}, headers=admin
    )
    assert r.status_code == 201, r.text
    done = r.json()
    assert done["prefix"] == "exports/synth/v0/release/"
    stored = [i.key for i in api.app.state.store.list(done["prefix"])]
    assert len(stored) == done["files"] == 6 * 5 + 1
    assert done["manifest_key"] in stored
    with session_scope(api.app.state.engine) as s:
        splits = s.scalars(sa.select(Image.split)).all()
    assert sorted(splits) == ["test"] * 3 + ["train"] * 3
