"""Bad input to the orchestrator, by HTTP and the `regrasp` CLI: refused clearly, nothing changed.

One real orchestrator for the module (uvicorn on 127.0.0.1, PostgreSQL, S3 on moto's
server) holds a small imported dataset, a round already applied and a round in review with
an item leased to an annotator. Every case sends one bad request and checks that

- the refusal is clear: an HTTP 4xx whose `detail` says what is wrong (for the CLI: exit
  status != 0, exactly one non-empty line on stderr, no traceback);
- nothing changed: `tests.harness.state.unchanged` compares, before and after the
  request, the row count and a content hash of every table (found by reflection) and the
  key list and SHA-256 of every stored object.

What may legitimately change on a refused request is named per case and nothing else is
ignored: `login_failures` for a failed password login (counted on purpose, for the rate
limit), and `imports` for a dataset refused in the background. `POST /datasets/import`
answers 202 once the request itself is valid, then reads every file before writing
anything; the refusal of a bad file is the import's final state `failed`, with an error
naming the file, and its `imports` row is that record (asserted: exactly one new row,
failed). Every bad dataset is the module's good dataset with one thing broken, so the
refusal is caused by that one thing.

Cases by entry point (pytest ids), 107 in all:

- import request, POST /datasets/import (`test_api_refuses`, import-*, 15): name with `../`,
  absolute name, path outside REGRASP_IMPORT_ROOTS, `..` climbing out of it, unknown
  source kind, text/plain body, form body, empty body, body over REGRASP_MAX_REQUEST_BYTES
  (413, declared and chunked), duplicate dataset name (409), annotator (403), no token
  (401), zero synthetic images, test fraction 1.
- import files, background refusal (`test_bad_dataset_is_refused`, 23): corrupt PNG,
  truncated TIFF, depth of another size than the RGB, integer depth, grayscale RGB, NaN /
  inf / negative opening / centre outside the image in a grasps line, 4-field line, not a
  number, empty grasps file, not UTF-8, a missing sibling file, a file over
  REGRASP_IMPORT_MAX_FILE_BYTES, a link to a file outside REGRASP_IMPORT_ROOTS; archives:
  empty, zip-slip (`../`), absolute member, backslash member, symlink member, not a zip,
  truncated zip.
- decisions, PUT/POST /review/items/{id}/decision and POST /rounds/{id}/decisions
  (decision-*, bulk-*, 14 + 5): unknown item, stale item version (409), item leased to another
  annotator (409), accepted prediction index out of range, duplicate indices,
  missing_label accepting nothing, removed grasp of another image, unknown decision kind,
  negative and NaN seconds_taken, change without a standing decision, the service key (no
  person), decision and change on an applied round (409); bulk: on an applied round (409),
  by an annotator (403), unknown image, empty list, one bad entry among good ones (all or
  none).
- login, POST /auth/login (login-*, 6): wrong password, unknown user, empty body, JSON body,
  missing password, oversize password.
- API keys, POST/DELETE /api-keys (key-*, 6): annotator creates (403) or revokes (403),
  unknown key id (404), empty name, unknown owner (404), text body.
- export and versions (export-*, rollback-*, diff-*, 9): unknown version, unknown dataset,
  prefix escaping exports/<dataset>/v<version>/ (`../`, nested `..`), annotator exports to
  the store (403), rollback to a version not made (404) or negative, annotator rollback
  (403), diff to a version not made. Versions are immutable: exporting an old version
  after a later one exists is valid and not a case here.
- unknown ids and roles (unknown-*, role-*, 15): round, dataset, campaign, import, round
  apply/cancel, claim in an unknown round, image, image kind, round on an unknown dataset;
  annotator on POST /rounds, /users, /campaigns; no token; forged token.
- CLI, `python -m regrasp.cli` (`test_cli_refuses`, cli-*, 14): import of a corrupt PNG, of a
  zip-slip archive, of a missing path; import under a `../` name, with an annotator's
  token; export to a store prefix escaping its folder, into a folder that does not exist
  (no file left behind), of an unknown dataset, of an unknown version; round start with
  malformed --config JSON; campaign start with non-integer --versions; usage errors (a
  value of the wrong type, an unknown option, an unknown command) as one line too.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.platform.auth import issue_token
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.objects import store_from_settings
from services.orchestrator.app import create_app
from tests.harness.databases import fresh_postgres_database
from tests.harness.inprocess import serve
from tests.harness.objects import new_bucket
from tests.harness.seeders import seed_round
from tests.harness.state import snapshot, unchanged

ADMIN = ("lead", "lead-password-1")
ANA = ("ana", "annotator-password")
BOB = ("bob", "annotator-password")
SECRET = "bad-input-secret-" + "s" * 30
SERVICE_KEY = "bad-input-service-" + "k" * 30
#: Small limits so that "too big" costs kilobytes, not gigabytes.
MAX_REQUEST_BYTES = 64 * 1024
MAX_FILE_BYTES = 48 * 1024
SIZE = 64  # image side: the size limits are tested by the limits above, not by pixels
IMAGES = (("0", "objA"), ("1", "objA"), ("0", "objB"), ("1", "objB"))
GRASPS = "32;30;0;24;8\n32;30;10;24;10\n20;40;20;16;6\n"  # within 30°: every 90° turn is flagged
FIRST = "objA/0_objA"  # the image every mutation breaks
REGRASP = [sys.executable, "-m", "regrasp.cli"]


# --- a minimal Jacquard dataset, written by hand ----------------------------------------------


def write_tree(root: Path) -> Path:
    """Four 64² Jacquard images (two objects) with every file; the module's good dataset."""
    rng = np.random.default_rng(0)
    for index, obj in IMAGES:
        folder = root / obj
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{index}_{obj}"
        depth = np.full((SIZE, SIZE), 0.6, np.float32)
        depth[20:44, 16:48] = 0.55
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[20:44, 16:48] = 255
        rgb = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        Path(f"{stem}_RGB.png").write_bytes(_encode(".png", rgb))
        Path(f"{stem}_perfect_depth.tiff").write_bytes(_encode(".tiff", depth))
        Path(f"{stem}_stereo_depth.tiff").write_bytes(_encode(".tiff", depth))
        Path(f"{stem}_mask.png").write_bytes(_encode(".png", mask))
        Path(f"{stem}_grasps.txt").write_text(GRASPS)
    return root


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def _file(root: Path, suffix: str) -> Path:
    return root / f"{FIRST}{suffix}"


def _grasps(text: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        _file(root, "_grasps.txt").write_text(text)

    return mutate


def _corrupt_png(root: Path) -> None:
    header = _file(root, "_RGB.png").read_bytes()[:33]  # signature + IHDR: the size reads fine
    _file(root, "_RGB.png").write_bytes(header + b"\x00garbage" * 50)


def _truncated_tiff(root: Path) -> None:
    path = _file(root, "_perfect_depth.tiff")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _depth_of_another_size(root: Path) -> None:
    depth = np.full((SIZE - 16, SIZE), 0.6, np.float32)
    _file(root, "_perfect_depth.tiff").write_bytes(_encode(".tiff", depth))


def _integer_depth(root: Path) -> None:
    depth = np.full((SIZE, SIZE), 600, np.uint16)  # millimetres, not metres
    _file(root, "_perfect_depth.tiff").write_bytes(_encode(".tiff", depth))


def _grayscale_rgb(root: Path) -> None:
    _file(root, "_RGB.png").write_bytes(_encode(".png", np.zeros((SIZE, SIZE), np.uint8)))


def _not_utf8(root: Path) -> None:
    _file(root, "_grasps.txt").write_bytes(b"32;30;0;24;8\n\xff\xfe\x00\n")


def _missing_mask(root: Path) -> None:
    _file(root, "_mask.png").unlink()


def _link_out_of_roots(root: Path) -> None:
    # A valid grasps file, but read through a link to a place outside REGRASP_IMPORT_ROOTS
    # (root is <roots>/<case>/tree): the path check passed, the link must not get around it.
    grasps = _file(root, "_grasps.txt")
    outside = root.parents[2] / f"outside-{root.parent.name}.txt"
    outside.write_bytes(grasps.read_bytes())
    grasps.unlink()
    grasps.symlink_to(outside)


def _oversize_file(root: Path) -> None:
    # Noise does not compress: a valid 128² RGB PNG of ~49 KiB, over the 48 KiB limit.
    noise = np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    data = _encode(".png", noise)
    assert len(data) > MAX_FILE_BYTES
    _file(root, "_RGB.png").write_bytes(data)


@dataclass(frozen=True)
class BadDataset:
    """The good tree with one thing broken; `archive(tree, zip_path)` zips it (or worse)."""

    says: str  # a fragment of the import's error
    mutate: Callable[[Path], None] | None = None
    archive: Callable[[Path, Path], None] | None = None
    names_file: bool = True  # whether the error names the first image's file or member


def _zip_tree(tree: Path, dest: Path, extra: Callable[[zipfile.ZipFile], None] | None = None):
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            zf.write(path, f"J/{path.relative_to(tree).as_posix()}")
        if extra is not None:
            extra(zf)


def _with_member(name: str, data: bytes = b"x") -> Callable[[Path, Path], None]:
    return lambda tree, dest: _zip_tree(tree, dest, lambda zf: zf.writestr(name, data))


def _symlink_member(tree: Path, dest: Path) -> None:
    def add(zf: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo("J/objA/2_objA_grasps.txt")
        info.create_system = 3  # Unix: the mode bits below are read as such
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")

    _zip_tree(tree, dest, add)


def _empty_archive(tree: Path, dest: Path) -> None:
    zipfile.ZipFile(dest, "w").close()


def _not_a_zip(tree: Path, dest: Path) -> None:
    dest.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)


def _truncated_zip(tree: Path, dest: Path) -> None:
    _zip_tree(tree, dest)
    dest.write_bytes(dest.read_bytes()[: dest.stat().st_size // 2])


BAD_DATASETS = [
    pytest.param(BadDataset("corrupt", _corrupt_png), id="corrupt-png"),
    pytest.param(BadDataset("corrupt", _truncated_tiff), id="truncated-tiff"),
    pytest.param(BadDataset("differs from the rgb", _depth_of_another_size), id="wrong-size"),
    pytest.param(BadDataset("floating-point", _integer_depth), id="integer-depth"),
    pytest.param(BadDataset("3 channels", _grayscale_rgb), id="grayscale-rgb"),
    pytest.param(BadDataset("nan or infinite", _grasps("nan;30;0;24;8\n")), id="grasps-nan"),
    pytest.param(BadDataset("nan or infinite", _grasps("32;inf;0;24;8\n")), id="grasps-inf"),
    pytest.param(BadDataset("must be positive", _grasps("32;30;0;-24;8\n")), id="grasps-negative"),
    pytest.param(BadDataset("outside the", _grasps("-5;30;0;24;8\n")), id="grasps-outside"),
    pytest.param(BadDataset("expected 5", _grasps("32;30;0;24\n")), id="grasps-4-fields"),
    pytest.param(BadDataset("not a number", _grasps("32;x;0;24;8\n")), id="grasps-not-number"),
    pytest.param(BadDataset("no grasp", _grasps("")), id="grasps-empty"),
    pytest.param(BadDataset("not a utf-8", _not_utf8), id="grasps-not-utf8"),
    pytest.param(BadDataset("missing", _missing_mask), id="missing-mask"),
    pytest.param(BadDataset("exceeds the limit", _oversize_file), id="file-over-limit"),
    pytest.param(
        BadDataset("outside the import roots", _link_out_of_roots), id="link-out-of-roots"
    ),
    pytest.param(
        BadDataset("no jacquard image", archive=_empty_archive, names_file=False),
        id="archive-empty",
    ),
    pytest.param(
        BadDataset("escapes", archive=_with_member("J/../../etc/cron.d/evil"), names_file=False),
        id="archive-zip-slip",
    ),
    pytest.param(
        BadDataset("escapes", archive=_with_member("/etc/cron.d/evil"), names_file=False),
        id="archive-absolute",
    ),
    pytest.param(
        BadDataset("escapes", archive=_with_member("J\\..\\..\\evil"), names_file=False),
        id="archive-backslash",
    ),
    pytest.param(
        BadDataset("symbolic link", archive=_symlink_member, names_file=False),
        id="archive-symlink",
    ),
    pytest.param(
        BadDataset("not a readable zip", archive=_not_a_zip, names_file=False),
        id="archive-not-zip",
    ),
    pytest.param(
        BadDataset("not a readable zip", archive=_truncated_zip, names_file=False),
        id="archive-truncated",
    ),
]


# --- the world: one orchestrator, its data, who is who ---------------------------------------


@dataclass
class World:
    url: str
    http: httpx.Client
    engine: Any
    store: Any
    sources: Path  # REGRASP_IMPORT_ROOTS: where imports may read
    tokens: dict[str | None, str | None]
    ids: dict[str, Any] = field(default_factory=dict)

    def call(self, who: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        token = self.tokens.get(who)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path.format(**self.ids), headers=headers, **kwargs)

    def unchanged(self, **ignore: Any):  # type: ignore[no-untyped-def]
        return unchanged(self.engine, self.store, **ignore)


def _login(http: httpx.Client, user: tuple[str, str]) -> str:
    r = http.post("/auth/login", data={"username": user[0], "password": user[1]})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _wait_import(w: World, import_id: int) -> dict:
    for _ in range(1200):
        status = w.call("admin", "GET", f"/datasets/imports/{import_id}").json()
        if status["state"] in ("succeeded", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"import {import_id} did not finish: {status}")


def _wait_round(w: World, round_id: int, state: str) -> dict:
    for _ in range(600):
        body = w.call("admin", "GET", f"/rounds/{round_id}").json()
        if body["state"] == state:
            return body
        assert body["state"] not in ("failed", "cancelled"), body
        time.sleep(0.05)
    raise AssertionError(f"round {round_id} never reached {state}: {body}")


@pytest.fixture(scope="module")
def world(tmp_path_factory, s3_server) -> Iterator[World]:
    root = tmp_path_factory.mktemp("bad-input")
    sources = root / "sources"
    sources.mkdir()
    with fresh_postgres_database() as database_url:
        settings = Settings(
            data_dir=root / "data",
            database_url=database_url,
            object_store_url=f"s3://{new_bucket(s3_server)}",
            s3_endpoint=s3_server.endpoint,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
            s3_region=s3_server.region,
            secret_key=SECRET,
            service_api_key=SERVICE_KEY,
            admin_username=ADMIN[0],
            admin_password=ADMIN[1],
            import_workers=1,
            import_roots=[sources],
            max_request_bytes=MAX_REQUEST_BYTES,
            import_max_file_bytes=MAX_FILE_BYTES,
            login_max_failures=10_000,  # the login cases fail on purpose; never throttle them
        )
        engine = make_engine(database_url)
        with (
            serve(create_app(settings), "orchestrator") as url,
            httpx.Client(base_url=url, timeout=60) as http,
        ):
            admin = _login(http, ADMIN)
            for name, password in (ANA, BOB):
                body = {"username": name, "password": password, "role": "annotator"}
                r = http.post("/users", json=body, headers={"Authorization": f"Bearer {admin}"})
                assert r.status_code == 201, r.text
            forged = issue_token("another-secret-" * 3, subject="1", role="admin", ttl_seconds=600)
            w = World(
                url=url,
                http=http,
                engine=engine,
                store=store_from_settings(settings),
                sources=sources,
                tokens={
                    "admin": admin,
                    "ana": _login(http, ANA),
                    "bob": _login(http, BOB),
                    "service": SERVICE_KEY,
                    "forged": forged,
                    None: None,
                },
            )
            _seed(w)
            yield w
        engine.dispose()


def _seed(w: World) -> None:
    """Import the good dataset, apply one round on it, open a second with an item leased."""
    write_tree(w.sources / "good")
    body = {"name": "base", "source": {"kind": "jacquard", "path": str(w.sources / "good")}}
    r = w.call("admin", "POST", "/datasets/import", json=body)
    assert r.status_code == 202, r.text
    status = _wait_import(w, r.json()["id"])
    assert status["state"] == "succeeded", status
    dataset = status["dataset_id"]
    w.ids["dataset"] = dataset

    with session_scope(w.engine) as session:
        applied = seed_round(session, dataset_id=dataset)
    images = [
        i["image_id"]
        for i in w.call("admin", "GET", f"/rounds/{applied}/review/upcoming?limit=10").json()
    ]
    assert len(images) == len(IMAGES)
    decisions = [{"image_id": i, "decision": "true_negative"} for i in images]
    r = w.call("admin", "POST", f"/rounds/{applied}/decisions", json={"decisions": decisions})
    assert r.status_code == 200, r.text
    r = w.call("admin", "POST", f"/rounds/{applied}/apply", json={})
    assert r.status_code == 200, r.text
    assert _wait_round(w, applied, "done")["result_version"] == 1
    with session_scope(w.engine) as session:
        applied_item = session.execute(
            sa.text("SELECT id, version FROM review_items WHERE round_id = :r ORDER BY id LIMIT 1"),
            {"r": applied},
        ).one()
        open_round = seed_round(session, dataset_id=dataset)

    claim = w.call(
        "ana", "POST", f"/rounds/{open_round}/review/claim", json={"lease_seconds": 3600}
    )
    assert claim.status_code == 200, claim.text
    item = claim.json()
    others = [
        i
        for i in w.call("admin", "GET", f"/rounds/{open_round}/review/upcoming?limit=10").json()
        if i["image_id"] != item["image_id"]
    ]
    other, third = others[:2]
    assert item["version"] >= 2  # the claim bumped it: version - 1 is a real, stale version
    w.ids.update(
        applied=applied,
        applied_item=applied_item.id,
        applied_version=applied_item.version,
        open=open_round,
        item=item["id"],
        version=item["version"],
        stale=item["version"] - 1,
        image=item["image_id"],
        other_image=other["image_id"],
        third_image=third["image_id"],
        n_predictions=len(item["predictions"]),
        label=item["labels"][0]["grasp_id"],
        other_label=other["labels"][0]["grasp_id"],
    )


# --- HTTP cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad request: who sends it, to where, with what; the status and what it must say."""

    who: str | None
    method: str
    path: str  # formatted with World.ids
    status: int
    says: str  # lower-cased fragment of `detail`
    body: Callable[[World], dict[str, Any]] = lambda w: {}  # httpx keyword arguments
    ignore_tables: tuple[str, ...] = ()


def _json(value: Any) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"json": value}


def _decision(**fields: Any) -> Callable[[World], dict[str, Any]]:
    """A decision body on the leased item; values given as "{name}" read World.ids."""

    def body(w: World) -> dict[str, Any]:
        out = {"item_version": w.ids["version"], "decision": "true_negative", "seconds_taken": 2.0}
        for name, value in fields.items():
            out[name] = _resolve(value, w)
        return {"json": out}

    return body


def _resolve(value: Any, w: World) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return w.ids[value[1:-1]]
    if isinstance(value, list):
        return [_resolve(v, w) for v in value]
    return value


def _bulk(*entries: dict[str, Any]) -> Callable[[World], dict[str, Any]]:
    return lambda w: {
        "json": {"decisions": [{k: _resolve(v, w) for k, v in e.items()} for e in entries]}
    }


def _chunked(size: int) -> Callable[[World], dict[str, Any]]:
    def body(w: World) -> dict[str, Any]:
        def chunks() -> Iterator[bytes]:
            yield b'{"name": "big", "source": {"kind": "synthetic", "images": 1}, "description": "'
            for _ in range(size // 1024):
                yield b"x" * 1024
            yield b'"}'

        return {"content": chunks(), "headers": {"Content-Type": "application/json"}}

    return body


def _import(name: str, source: dict[str, Any], **extra: Any) -> Callable[[World], dict[str, Any]]:
    def body(w: World) -> dict[str, Any]:
        src = {k: (str(w.sources) + v if k == "path" else v) for k, v in source.items()}
        return {"json": {"name": name, "source": src, **extra}}

    return body


def _case(
    case_id: str,
    who: str | None,
    method: str,
    path: str,
    status: int,
    says: str,
    body: Callable[[World], dict[str, Any]] | None = None,
    *,
    ignore: tuple[str, ...] = (),
):  # type: ignore[no-untyped-def]
    case = Case(who, method, path, status, says, body or (lambda w: {}), ignore)
    return pytest.param(case, id=case_id)


def _text(data: bytes, content_type: str = "text/plain") -> Callable[[World], dict[str, Any]]:
    return lambda w: {"content": data, "headers": {"Content-Type": content_type}}


def _form(**fields: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"data": fields}


def _nan_seconds(w: World) -> dict[str, Any]:
    version = w.ids["version"]
    body = f'{{"item_version": {version}, "decision": "true_negative", "seconds_taken": NaN}}'
    return _text(body.encode(), "application/json")(w)


def _campaign(w: World) -> dict[str, Any]:
    return {"json": {"dataset_id": w.ids["dataset"], "networks": ["ggcnn"], "versions": [0]}}


IMP = "/datasets/import"
DEC = "/review/items/{item}/decision"  # the open round's item, leased to ana
APPLIED_DEC = "/review/items/{applied_item}/decision"  # an item of the applied round
BULK, BULK_APPLIED = "/rounds/{open}/decisions", "/rounds/{applied}/decisions"
KEYS, LOGIN, DS = "/api-keys", "/auth/login", "/datasets/{dataset}"
JQ = {"kind": "jacquard", "path": "/good"}  # `path` is taken under the import root
BIG = "x" * (MAX_REQUEST_BYTES + 1024)
FAILED = ("login_failures",)  # a failed login is counted on purpose (the rate limit)
TN = {"image_id": "{other_image}", "decision": "true_negative"}
OUT_OF_RANGE = {"image_id": "{third_image}", "decision": "missing_label"}
OUT_OF_RANGE["accepted_predictions"] = [99]  # type: ignore[assignment]

# fmt: off
CASES = [
    # import requests: refused before anything runs
    _case("import-name-traversal", "admin", "POST", IMP, 422, "name", _import("../evil", JQ)),
    _case("import-name-absolute", "admin", "POST", IMP, 422, "name", _import("/etc", JQ)),
    _case("import-path-outside-roots", "admin", "POST", IMP, 422, "regrasp_import_roots",
          _json({"name": "x", "source": {"kind": "jacquard", "path": "/etc"}})),
    _case("import-path-climbs-out", "admin", "POST", IMP, 422, "regrasp_import_roots",
          _import("x", {"kind": "jacquard", "path": "/good/../../../etc"})),
    _case("import-unknown-kind", "admin", "POST", IMP, 422, "source", _import("x", {"kind": "?"})),
    _case("import-text-body", "admin", "POST", IMP, 422, "body", _text(b"name=x")),
    _case("import-form-body", "admin", "POST", IMP, 422, "body", _form(name="x")),
    _case("import-empty-body", "admin", "POST", IMP, 422, "body"),
    _case("import-body-over-limit", "admin", "POST", IMP, 413, "request body",
          _import("big", JQ, description=BIG)),
    _case("import-chunked-body-over-limit", "admin", "POST", IMP, 413, "request body",
          _chunked(MAX_REQUEST_BYTES + 4096)),
    _case("import-duplicate-name", "admin", "POST", IMP, 409, "exists", _import("base", JQ)),
    _case("import-by-annotator", "ana", "POST", IMP, 403, "not an admin", _import("x", JQ)),
    _case("import-no-token", None, "POST", IMP, 401, "credential", _import("x", JQ)),
    _case("import-zero-images", "admin", "POST", IMP, 422, "images",
          _import("x", {"kind": "synthetic", "images": 0})),
    _case("import-test-fraction-1", "admin", "POST", IMP, 422, "test_fraction",
          _import("x", JQ, split={"test_fraction": 1})),
    # decisions on one item (leased to ana, in the open round)
    _case("decision-unknown-item", "ana", "PUT", "/review/items/999999/decision", 404, "exist",
          _decision()),
    _case("decision-stale-version", "ana", "POST", DEC, 409, "changed since version",
          _decision(item_version="{stale}")),
    _case("decision-leased-to-another", "bob", "POST", DEC, 409, "leased to another", _decision()),
    _case("decision-prediction-out-of-range", "ana", "POST", DEC, 422, "do not exist",
          _decision(decision="missing_label", accepted_predictions=["{n_predictions}"])),
    _case("decision-duplicate-predictions", "ana", "POST", DEC, 422, "duplicates",
          _decision(decision="missing_label", accepted_predictions=[0, 0])),
    _case("decision-missing-label-accepts-nothing", "ana", "POST", DEC, 422, "at least one",
          _decision(decision="missing_label")),
    _case("decision-grasp-of-another-image", "ana", "POST", DEC, 422, "are not labels of image",
          _decision(decision="fix", removed_grasp_ids=["{other_label}"])),
    _case("decision-unknown-kind", "ana", "POST", DEC, 422, "decision", _decision(decision="?")),
    _case("decision-negative-seconds", "ana", "POST", DEC, 422, "seconds_taken",
          _decision(seconds_taken=-1)),
    _case("decision-nan-seconds", "ana", "POST", DEC, 422, "seconds_taken", _nan_seconds),
    _case("decision-change-without-decision", "ana", "PUT", DEC, 404, "no standing decision",
          _decision()),
    _case("decision-by-service-key", "service", "POST", DEC, 403, "need a user", _decision()),
    _case("decision-on-applied-round", "admin", "POST", APPLIED_DEC, 409, "already applied",
          _decision(item_version="{applied_version}")),
    _case("decision-change-on-applied-round", "admin", "PUT", APPLIED_DEC, 409, "already applied",
          _decision(item_version="{applied_version}")),
    # bulk decisions (admins; all or none)
    _case("bulk-on-applied-round", "admin", "POST", BULK_APPLIED, 409, "not reviewing", _bulk(TN)),
    _case("bulk-by-annotator", "ana", "POST", BULK, 403, "not an admin", _bulk(TN)),
    _case("bulk-unknown-image", "admin", "POST", BULK, 404, "no review item",
          _bulk({**TN, "image_id": 999999})),
    _case("bulk-empty", "admin", "POST", BULK, 422, "decisions", _bulk()),
    _case("bulk-one-bad-entry-writes-none", "admin", "POST", BULK, 422, "do not exist",
          _bulk(TN, OUT_OF_RANGE)),
    # login
    _case("login-wrong-password", None, "POST", LOGIN, 401, "wrong username or password",
          _form(username=ADMIN[0], password="not-the-password"), ignore=FAILED),
    _case("login-unknown-user", None, "POST", LOGIN, 401, "wrong username or password",
          _form(username="nobody", password="whatever-password"), ignore=FAILED),
    _case("login-empty-body", None, "POST", LOGIN, 422, "username"),
    _case("login-json-body", None, "POST", LOGIN, 422, "username",
          _json({"username": ADMIN[0], "password": ADMIN[1]})),
    _case("login-missing-password", None, "POST", LOGIN, 422, "password", _form(username="x")),
    _case("login-oversize-password", None, "POST", LOGIN, 422, "password",
          _form(username=ADMIN[0], password="p" * 20_000)),
    # API keys
    _case("key-create-by-annotator", "ana", "POST", KEYS, 403, "admin", _json({"name": "r"})),
    _case("key-revoke-by-annotator", "ana", "DELETE", f"{KEYS}/1", 403, "not an admin"),
    _case("key-unknown-id", "admin", "DELETE", f"{KEYS}/999999", 404, "not found"),
    _case("key-empty-name", "admin", "POST", KEYS, 422, "name", _json({"name": ""})),
    _case("key-unknown-owner", "admin", "POST", KEYS, 404, "not found",
          _json({"name": "r", "owner_id": 999999})),
    _case("key-text-body", "admin", "POST", KEYS, 422, "body", _text(b"robot")),
    # export and versions
    _case("export-unknown-version", "ana", "GET", f"{DS}/versions/99/export.zip", 404, "99"),
    _case("export-unknown-dataset", "ana", "GET", "/datasets/999999/versions/0/export.zip", 404,
          "does not exist"),
    _case("export-prefix-climbs-out", "admin", "POST", f"{DS}/versions/0/export", 422,
          "export path", _json({"prefix": "../../datasets/base"})),
    _case("export-prefix-nested-dotdot", "admin", "POST", f"{DS}/versions/0/export", 422,
          "export path", _json({"prefix": "release/../../../models"})),
    _case("export-to-store-by-annotator", "ana", "POST", f"{DS}/versions/0/export", 403,
          "not an admin", _json({})),
    _case("rollback-unknown-version", "admin", "POST", f"{DS}/rollback", 404, "99",
          _json({"to": 99})),
    _case("rollback-negative-version", "admin", "POST", f"{DS}/rollback", 422, "to",
          _json({"to": -1})),
    _case("rollback-by-annotator", "ana", "POST", f"{DS}/rollback", 403, "not an admin",
          _json({"to": 0})),
    _case("diff-unknown-version", "ana", "GET", f"{DS}/diff?from=0&to=99", 404, "99"),
    # unknown ids and roles
    _case("unknown-round", "ana", "GET", "/rounds/999999", 404, "does not exist"),
    _case("unknown-dataset", "ana", "GET", "/datasets/999999", 404, "does not exist"),
    _case("unknown-campaign", "ana", "GET", "/campaigns/999999", 404, "999999"),
    _case("unknown-import", "ana", "GET", "/datasets/imports/999999", 404, "not found"),
    _case("unknown-round-apply", "admin", "POST", "/rounds/999999/apply", 404, "exist", _json({})),
    _case("unknown-round-cancel", "admin", "POST", "/rounds/999999/cancel", 404, "exist"),
    _case("unknown-round-claim", "ana", "POST", "/rounds/999999/review/claim", 404, "exist"),
    _case("unknown-image", "ana", "GET", "/images/999999/rgb", 404, "does not exist"),
    _case("unknown-image-kind", "ana", "GET", "/images/{image}/bogus", 422, "kind"),
    _case("unknown-dataset-round", "admin", "POST", "/rounds", 404, "999999",
          _json({"dataset_id": 999999})),
    _case("role-annotator-starts-round", "ana", "POST", "/rounds", 403, "not an admin",
          _json({"dataset_id": 1})),
    _case("role-annotator-creates-user", "ana", "POST", "/users", 403, "not an admin",
          _json({"username": "eve", "password": "eve-password", "role": "admin"})),
    _case("role-annotator-starts-campaign", "ana", "POST", "/campaigns", 403, "not an admin",
          _campaign),
    _case("role-no-token", None, "POST", "/rounds", 401, "credential", _json({"dataset_id": 1})),
    _case("role-forged-token", "forged", "POST", "/rounds", 401, "invalid",
          _json({"dataset_id": 1})),
]
# fmt: on


@pytest.mark.parametrize("case", CASES)
def test_api_refuses(world: World, case: Case) -> None:
    with world.unchanged(ignore_tables=case.ignore_tables):
        response = world.call(case.who, case.method, case.path, **case.body(world))
    assert response.status_code == case.status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and case.says in detail.lower(), detail
    assert "traceback" not in response.text.lower()


@pytest.mark.parametrize("bad", BAD_DATASETS)
def test_bad_dataset_is_refused(world: World, bad: BadDataset, request) -> None:
    name = request.node.callspec.id
    tree = write_tree(world.sources / name / "tree")
    path = tree
    if bad.mutate is not None:
        bad.mutate(tree)
    if bad.archive is not None:
        path = world.sources / name / "dataset.zip"
        bad.archive(tree, path)
    imports_before = len(world.call("admin", "GET", "/datasets/imports").json())
    with world.unchanged(ignore_tables=("imports",)):
        body = {"name": name, "source": {"kind": "jacquard", "path": str(path)}}
        response = world.call("admin", "POST", "/datasets/import", json=body)
        assert response.status_code == 202, response.text
        status = _wait_import(world, response.json()["id"])
    assert status["state"] == "failed" and status["dataset_id"] is None, status
    error = status["error"]
    assert bad.says in error.lower(), error
    assert "internal error" not in error and "Traceback" not in error
    if bad.names_file:
        assert f"{FIRST}_" in error, error  # the message names the broken file
    else:
        assert str(path) in error, error
    rows = world.call("admin", "GET", "/datasets/imports").json()
    assert len(rows) == imports_before + 1 and rows[0]["id"] == response.json()["id"]


# --- CLI cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliCase:
    args: Callable[[World, Path], list[str]]  # (world, the test's tmp_path) → arguments
    says: str  # lower-cased fragment of the one stderr line
    who: str = "admin"  # whose credential REGRASP_ORCHESTRATOR_TOKEN carries
    ignore_tables: tuple[str, ...] = ()


def _cli_tree(mutate: Callable[[Path], None] | None = None, *, archive=None):  # type: ignore[no-untyped-def]
    def build(w: World, tmp: Path) -> Path:
        tree = write_tree(w.sources / f"cli-{tmp.name}" / "tree")
        if mutate is not None:
            mutate(tree)
        if archive is None:
            return tree
        dest = tree.parent / "dataset.zip"
        archive(tree, dest)
        return dest

    return build


def _cli(case_id: str, args, says: str, *, who: str = "admin", background: bool = False):  # type: ignore[no-untyped-def]
    """A CLI case; `background`: refused by the import job, whose `imports` row records it."""
    ignore = ("imports",) if background else ()
    return pytest.param(CliCase(args, says, who, ignore), id=case_id)


SLIP = _with_member("J/../../evil")
OUT = ["-o", "x.zip"]  # relative to the command's working folder, the test's tmp_path

# fmt: off
CLI_CASES = [
    _cli("cli-import-corrupt-png", lambda w, t: ["import", "clibad", "--jacquard",
         str(_cli_tree(_corrupt_png)(w, t))], "corrupt", background=True),
    _cli("cli-import-zip-slip", lambda w, t: ["import", "clislip", "--jacquard",
         str(_cli_tree(archive=SLIP)(w, t))], "escapes", background=True),
    _cli("cli-import-missing-path", lambda w, t: ["import", "cligone", "--jacquard",
         str(w.sources / "nowhere")], "no such folder", background=True),
    _cli("cli-import-bad-name", lambda w, t: ["import", "../evil", "--synthetic", "2"], "name"),
    _cli("cli-import-by-annotator", lambda w, t: ["import", "x", "--synthetic", "2"],
         "not an admin", who="ana"),
    _cli("cli-export-prefix-escapes", lambda w, t: ["export", "base", "--to-store", "--prefix",
         "../../datasets/base"], "export path"),
    _cli("cli-export-output-folder-missing", lambda w, t: ["export", "base", "-o",
         "no/such/folder/x.zip"], "no such file or directory"),
    _cli("cli-export-unknown-dataset", lambda w, t: ["export", "nosuchdataset", *OUT],
         "no dataset"),
    _cli("cli-export-unknown-version", lambda w, t: ["export", "base", "--version", "99", *OUT],
         "99"),
    _cli("cli-round-bad-config", lambda w, t: ["round", "start", "base", "--config", "{x"],
         "--config"),
    _cli("cli-campaign-bad-versions", lambda w, t: ["campaign", "start", "base", "--networks",
         "ggcnn", "--versions", "a,b"], "--versions"),
    _cli("cli-usage-wrong-type", lambda w, t: ["import", "x", "--synthetic", "abc"],
         "'--synthetic'"),
    _cli("cli-usage-unknown-option", lambda w, t: ["export", "base", "--no-such-option"],
         "no such option"),
    _cli("cli-usage-unknown-command", lambda w, t: ["nosuchcommand"], "no such command"),
    # Refused before the demo starts any service.
    _cli("cli-demo-bad-flag", lambda w, t: ["demo", "--flag", "nope"], "--flag"),
    _cli("cli-demo-bad-corruption-kinds", lambda w, t: ["demo", "--corruption-kinds", "smudge"],
         "--corruption-kinds"),
]
# fmt: on


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses(world: World, case: CliCase, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGRASP_")}
    env.update(
        REGRASP_ORCHESTRATOR_URL=world.url,
        REGRASP_ORCHESTRATOR_TOKEN=world.tokens[case.who] or "",
        REGRASP_DATA_DIR=str(tmp_path / "cli-data"),
    )
    args = case.args(world, tmp_path)
    with world.unchanged(ignore_tables=case.ignore_tables):
        result = subprocess.run(
            [*REGRASP, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("error:") and case.says in lines[0].lower(), lines[0]
    assert not list(tmp_path.rglob("*.zip*")), "a refused export left a file behind"


def test_the_good_dataset_imports_and_snapshots_see_changes(world: World) -> None:
    """The controls: the unbroken tree imports, and a write shows up in the snapshot."""
    tree = write_tree(world.sources / "control" / "tree")
    before = snapshot(world.engine, world.store, ignore_tables=("imports",))
    body = {"name": "control", "source": {"kind": "jacquard", "path": str(tree)}}
    response = world.call("admin", "POST", "/datasets/import", json=body)
    assert response.status_code == 202
    assert _wait_import(world, response.json()["id"])["state"] == "succeeded"
    after = snapshot(world.engine, world.store, ignore_tables=("imports",))
    changed = before.differences(after)
    assert any(c.startswith("table grasps:") for c in changed), changed
    assert sum(c.startswith("object datasets/control/") for c in changed) == 5 * len(IMAGES)
    # The decision every bad decision case is refused against is otherwise acceptable.
    ok = _decision()(world)["json"]
    with pytest.raises(AssertionError, match="table reviews"):
        with world.unchanged():
            r = world.call("ana", "POST", "/review/items/{item}/decision", json=ok)
            assert r.status_code == 201, r.text


def test_every_entry_point_has_cases() -> None:
    """At least 40 distinct cases across the entry points; ids are unique."""
    ids = [p.id for p in (*CASES, *BAD_DATASETS, *CLI_CASES)]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    for prefix in ("import-", "decision-", "bulk-", "login-", "key-", "export-", "unknown-"):
        assert any(i.startswith(prefix) for i in ids), prefix
