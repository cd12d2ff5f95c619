"""Import and export on the real Jacquard samples, SQLite and PostgreSQL, file:// and S3.

Export of version 0 must give back the imported dataset: every image byte for byte and
every grasps file value for value. A bad dataset must leave nothing behind, and a re-run
must reuse what is already stored.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.data import versions as V
from regrasp.data.export import export_to_store, iter_export_zip, plan_export
from regrasp.data.formats.jacquard import scan_jacquard
from regrasp.data.ingest import (
    SplitSpec,
    StoreSource,
    assign_splits,
    import_dataset,
    open_dataset,
    stage_import,
)
from regrasp.grasp.rectangles import parse_jacquard, read_jacquard
from regrasp.platform.errors import Conflict, FormatError
from regrasp.platform.store import keys
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Base, Dataset, Image, ImageSpan
from regrasp.platform.store.objects import open_store


@pytest.fixture
def file_store(file_store_url):
    return open_store(file_store_url)


@pytest.fixture
def s3_store(s3_server, s3_store_url):
    return open_store(
        s3_store_url,
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        s3_region=s3_server.region,
    )


def _sample_files(root: Path) -> dict[str, Path]:
    """Relative path → file of every Jacquard file of the samples."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.glob("*/*"))
        if p.name.endswith(("_RGB.png", ".tiff", "_mask.png", "_grasps.txt"))
    }


def _assert_reproduces(members: dict[str, bytes], samples: Path) -> None:
    """Export members (relative path → bytes) equal the original sample files."""
    originals = _sample_files(samples)
    assert set(members) == set(originals)
    for rel, path in originals.items():
        if rel.endswith("_grasps.txt"):
            got = parse_jacquard(members[rel].decode("ascii"), source=rel)
            np.testing.assert_array_equal(got, read_jacquard(path), err_msg=rel)
        else:
            assert members[rel] == path.read_bytes(), rel


def _row_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in Base.metadata.tables.items()
        }


def test_import_then_export_v0_reproduces_the_samples(
    migrated_engine, file_store, jacquard_samples
):
    with open_dataset("jacquard", path=jacquard_samples) as dataset:
        result = import_dataset(
            migrated_engine,
            file_store,
            dataset,
            name="samples",
            split=SplitSpec(kind="object", seed=3, test_fraction=0.3),
            workers=2,
        )
    originals = _sample_files(jacquard_samples)
    n_images = len([r for r in originals if r.endswith("_RGB.png")])
    n_grasps = sum(len(read_jacquard(p)) for r, p in originals.items() if r.endswith("_grasps.txt"))
    assert (result.images, result.objects, result.grasps) == (n_images, 7, n_grasps)
    assert (result.uploaded, result.skipped) == (len(originals), 0)

    with session_scope(migrated_engine) as s:
        images = s.scalars(sa.select(Image).where(Image.dataset_id == result.dataset_id)).all()
        plan = plan_export(s, result.dataset_id, 0)
    # Splits are object-wise and recorded; checksums are the RGB files' SHA-256.
    by_object: dict[int, set[str | None]] = {}
    for image in images:
        by_object.setdefault(image.object_id, set()).add(image.split)
        rgb = next(p for r, p in originals.items() if r.endswith(f"/{image.name}_RGB.png"))
        assert image.checksum == hashlib.sha256(rgb.read_bytes()).hexdigest()
        assert file_store.get_bytes(image.rgb_key) == rgb.read_bytes()
    assert all(len(splits) == 1 for splits in by_object.values())
    assert {s for splits in by_object.values() for s in splits} == {"train", "test"}

    archive = zipfile.ZipFile(io.BytesIO(b"".join(iter_export_zip(file_store, plan))))
    names = archive.namelist()
    assert all(n.startswith("samples-v0/") for n in names)
    members = {n.split("/", 1)[1]: archive.read(n) for n in names}
    manifest = json.loads(members.pop("manifest.json"))
    _assert_reproduces(members, jacquard_samples)
    assert manifest["version"] == 0 and manifest["counts"]["grasps"] == n_grasps
    assert manifest["changes_since_v0"]["removed_grasps"] == []
    assert len(manifest["splits"]) == n_images


@pytest.mark.slow
def test_s3_export_to_store_and_reimport_from_the_prefix(sqlite_url, s3_store, jacquard_samples):
    from regrasp.platform.store.db import migrations
    from regrasp.platform.store.db.engine import make_engine

    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with open_dataset("jacquard", path=jacquard_samples) as dataset:
            first = import_dataset(engine, s3_store, dataset, name="samples", workers=2)
        with session_scope(engine) as s:
            plan = plan_export(s, first.dataset_id, 0)
        done = export_to_store(s3_store, plan)
        assert done.prefix == keys.export_prefix("samples", 0)
        stored = {i.key[len(done.prefix) :]: i for i in s3_store.list(done.prefix)}
        assert len(stored) == done.files == len(_sample_files(jacquard_samples)) + 1
        members = {k: s3_store.get_bytes(done.prefix + k) for k in stored if k != "manifest.json"}
        _assert_reproduces(members, jacquard_samples)

        with scan_jacquard(StoreSource(s3_store, done.prefix)) as again:
            second = import_dataset(engine, s3_store, again, name="samples-copy", workers=2)
        with session_scope(engine) as s:
            a = V.labels_at(s, first.dataset_id, 0)
            b = V.labels_at(s, second.dataset_id, 0)
        np.testing.assert_array_equal(a.grasps, b.grasps)
        assert second.uploaded == first.uploaded
    finally:
        engine.dispose()


def _copy_samples(src: Path, dst: Path, objects: int = 2) -> Path:
    """A small writable copy (the first objects) in the test's temporary folder."""
    for folder in sorted(p for p in src.iterdir() if p.is_dir())[:objects]:
        shutil.copytree(folder, dst / folder.name)
    return dst


def _last(root: Path, suffix: str) -> Path:
    return sorted(root.glob(f"*/*{suffix}"))[-1]


def _break_missing(root: Path) -> tuple[Path, str]:
    victim = _last(root, "_stereo_depth.tiff")
    victim.unlink()
    return root, victim.name


def _break_grasps_line(root: Path) -> tuple[Path, str]:
    victim = _last(root, "_grasps.txt")
    lines = victim.read_text().splitlines()
    lines[3] = "512.0;301.5;12.0;40.0"  # four values instead of five
    victim.write_text("\n".join(lines) + "\n")
    return root, f"{victim.name}:4"


def _break_png(root: Path) -> tuple[Path, str]:
    victim = _last(root, "_RGB.png")
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # truncated: header intact, pixels cut
    return root, victim.name


def _break_zip_slip(root: Path) -> tuple[Path, str]:
    archive = root.parent / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, f"Jacquard/{path.relative_to(root).as_posix()}")
        zf.writestr("Jacquard/../../outside.txt", "escaped")
    return archive, "../../outside.txt"


@pytest.mark.parametrize(
    "damage", [_break_missing, _break_grasps_line, _break_png, _break_zip_slip]
)
def test_bad_dataset_refused_naming_the_file_and_nothing_written(
    damage, migrated_engine, file_store, jacquard_samples, tmp_path
):
    source, named = damage(_copy_samples(jacquard_samples, tmp_path / "samples"))
    before = _row_counts(migrated_engine)
    with pytest.raises(FormatError) as info:
        with open_dataset("jacquard", path=source) as dataset:
            import_dataset(migrated_engine, file_store, dataset, name="broken", workers=2)
    assert named in str(info.value)
    assert _row_counts(migrated_engine) == before
    assert list(file_store.list("")) == []


def test_rerun_after_a_crash_reuses_stored_files(
    migrated_engine, file_store, jacquard_samples, tmp_path
):
    root = _copy_samples(jacquard_samples, tmp_path / "samples", objects=3)
    with scan_jacquard(root) as dataset:
        # A first attempt that stored every file and died before its transaction.
        with stage_import(file_store, dataset, name="samples", workers=2) as staged:
            assert (staged.uploaded, staged.skipped) == (staged.files, 0)
        files = staged.files
        with session_scope(migrated_engine) as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(Dataset)) == 0
        # One stored object was since damaged: it alone is uploaded again.
        first = dataset.images[0]
        damaged = keys.image_file_key("samples", first.object_id, first.name, "mask")
        file_store.put_bytes(damaged, b"not the mask")
        result = import_dataset(migrated_engine, file_store, dataset, name="samples", workers=2)
    assert (result.uploaded, result.skipped) == (1, files - 1)
    assert file_store.get_bytes(damaged) == dataset.images[0].read_bytes("mask")
    with pytest.raises(Conflict, match="already exists"), scan_jacquard(root) as dataset:
        import_dataset(migrated_engine, file_store, dataset, name="samples", workers=2)


def test_export_of_a_later_version_applies_the_changes_with_provenance(
    migrated_engine, file_store, jacquard_samples, tmp_path
):
    root = _copy_samples(jacquard_samples, tmp_path / "samples")
    with scan_jacquard(root) as dataset:
        result = import_dataset(migrated_engine, file_store, dataset, name="small", workers=2)
    with session_scope(migrated_engine) as s:
        labels = V.labels_at(s, result.dataset_id, 0)
        ids = np.unique(labels.image_ids)
        gone_image, edited = int(ids[0]), int(ids[1])
        drop = labels.grasp_ids[labels.image_ids == edited][:2]
        added = np.array([[500.0, 480.0, 33.5, 61.0, 20.0]])
        V.create_version(
            s,
            result.dataset_id,
            0,
            V.ChangeSet(
                remove_image_ids=[gone_image],
                remove_image_reasons="annotation error: stick grasped along",
                remove_grasp_ids=drop,
                remove_grasp_reasons="fix: wrong rectangle",
                add_image_ids=[edited],
                add_grasps=added,
                add_source="prediction",
                add_notes="missing label",
            ),
            message="round 1",
        )
        names = dict(s.execute(sa.select(Image.id, Image.name)).all())
        plan = plan_export(s, result.dataset_id, 1)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(iter_export_zip(file_store, plan, root=""))))
    members = set(archive.namelist())
    assert not any(names[gone_image] in m for m in members)
    edited_file = next(m for m in members if m.endswith(f"/{names[edited]}_grasps.txt"))
    got = parse_jacquard(archive.read(edited_file).decode())
    original = labels.grasps[labels.image_ids == edited]
    np.testing.assert_array_equal(got, np.vstack([original[2:], added]))

    changes = json.loads(archive.read("manifest.json"))["changes_since_v0"]
    assert [c["image"] for c in changes["removed_images"]] == [names[gone_image]]
    assert changes["removed_images"][0]["reason"] == "annotation error: stick grasped along"
    assert [c["reason"] for c in changes["removed_grasps"]].count("fix: wrong rectangle") == 2
    assert [(c["source"], c["note"], c["grasp"]) for c in changes["added_grasps"]] == [
        ("prediction", "missing label", added[0].tolist())
    ]
    with session_scope(migrated_engine) as s:
        spans = s.scalar(sa.select(sa.func.count()).select_from(ImageSpan))
    assert spans == len(ids)


def test_splits_are_deterministic_and_keep_objects_together():
    objects = [f"o{i % 9}" for i in range(60)]
    images = [f"{i}_o{i % 9}" for i in range(60)]
    spec = SplitSpec(kind="object", seed=5, test_fraction=0.25)
    a = assign_splits(objects, images, spec)
    assert a == assign_splits(objects, images, spec)
    per_object = {o: {s for o2, s in zip(objects, a, strict=True) if o2 == o} for o in objects}
    assert all(len(v) == 1 for v in per_object.values())
    assert sum(v == {"test"} for v in per_object.values()) == 2  # round(0.25 × 9)
    b = assign_splits(objects, images, SplitSpec(kind="image", seed=5, test_fraction=0.25))
    assert b.count("test") == 15


def test_export_after_a_round_keeps_every_untouched_grasps_file_byte_for_byte(
    migrated_engine, file_store, jacquard_samples
):
    """A round that fixes one image: every other grasps file is exported as imported, byte
    for byte; the fixed one keeps its CRLF endings, its `24.0` numbers and its kept lines."""
    from regrasp.platform.accounts import create_user
    from regrasp.platform.store.db.tables import ReviewItem
    from regrasp.refine.review.decisions import decide
    from regrasp.refine.rounds.applying import apply_round
    from regrasp.workflows.rounds import machine
    from tests.harness.seeders import seed_round

    with open_dataset("jacquard", path=jacquard_samples) as dataset:
        result = import_dataset(migrated_engine, file_store, dataset, name="bytes", workers=2)
    with session_scope(migrated_engine) as s:
        lead = create_user(s, username="lead", password="lead-password-1", role="admin").id
        round_id = seed_round(s, dataset_id=result.dataset_id, max_images=1)
    with session_scope(migrated_engine) as s:
        item = s.scalars(sa.select(ReviewItem).where(ReviewItem.round_id == round_id)).one()
        labels = V.labels_at(s, result.dataset_id, 0)
        own = labels.grasp_ids[labels.image_ids == item.image_id]
        decide(
            s,
            item.id,
            lead,
            item_version=item.version,
            decision="fix",
            removed_grasp_ids=[int(own[0])],
            accepted_predictions=[1],
            seconds_taken=1.0,
        )
        changed = s.get(Image, item.image_id).name
    with session_scope(migrated_engine) as s:
        machine.request_apply(s, round_id, force=False, by=lead)
    with session_scope(migrated_engine) as s:
        assert apply_round(s, round_id) == 1
        plan = plan_export(s, result.dataset_id, 1)
        labels_v1 = V.labels_at(s, result.dataset_id, 1)
        changed_labels = labels_v1.grasps[labels_v1.image_ids == item.image_id]

    archive = zipfile.ZipFile(io.BytesIO(b"".join(iter_export_zip(file_store, plan, root=""))))
    grasps = {n: archive.read(n) for n in archive.namelist() if n.endswith("_grasps.txt")}
    originals = {r: p for r, p in _sample_files(jacquard_samples).items() if r in grasps}
    assert set(grasps) == set(originals) and len(grasps) > 1
    untouched = [r for r in grasps if not r.endswith(f"/{changed}_grasps.txt")]
    assert len(untouched) == len(grasps) - 1
    for rel in untouched:
        assert grasps[rel] == originals[rel].read_bytes(), rel

    (rel,) = set(grasps) - set(untouched)
    before, after = originals[rel].read_bytes(), grasps[rel]
    assert after != before
    assert after.count(b"\r\n") == len(after.splitlines()) and b"\n" not in after.replace(
        b"\r\n", b""
    )
    np.testing.assert_array_equal(parse_jacquard(after.decode("ascii")), changed_labels)
    old_lines, new_lines = before.splitlines(), after.splitlines()
    assert new_lines[: len(old_lines) - 1] == old_lines[1:]  # kept lines as written, in order
    assert len(new_lines) == len(old_lines)  # one removed, one accepted prediction added
    if b".0;" in before:  # the samples write integral values as `24.0`; so does the export
        assert all(not re.search(rb"(^|;)-?\d+(;|$)", line) for line in new_lines)
