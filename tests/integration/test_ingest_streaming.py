"""The one-pass importer: bad files stopped from their headers, re-runs, zip sources read
from several threads, Cornell end to end, decodes in a process pool, batched writes.

Real databases (SQLite and PostgreSQL) and a real `file://` store; datasets are the real
Jacquard samples (copied into the test's folder where a test damages them) or a small
Cornell-format dataset generated here.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.data import versions as V
from regrasp.data.formats.sources import ZipSource
from regrasp.data.ingest import (
    ImportInterrupted,
    import_dataset,
    open_dataset,
    stage_import,
    write_version0,
)
from regrasp.grasp.imaging import decode_depth
from regrasp.grasp.rectangles import corners
from regrasp.platform.errors import FormatError
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Base, Dataset, DatasetVersion, Image
from regrasp.platform.store.objects import open_store


@pytest.fixture
def file_store(file_store_url):
    return open_store(file_store_url)


def _copy_samples(src: Path, dst: Path, objects: int = 2) -> Path:
    for folder in sorted(p for p in src.iterdir() if p.is_dir())[:objects]:
        shutil.copytree(folder, dst / folder.name)
    return dst


def _row_counts(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in Base.metadata.tables.items()
        }


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _images(engine, dataset_id: int) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    """name → (width, height, split, checksum, rgb key's file name) of a dataset's images."""
    with session_scope(engine) as s:
        rows = s.scalars(sa.select(Image).where(Image.dataset_id == dataset_id)).all()
        return {
            r.name: (r.width, r.height, r.split, r.checksum, r.rgb_key.rsplit("/", 2)[-2])
            for r in rows
        }


def _labels(engine, dataset_id: int) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        labels = V.labels_at(s, dataset_id, 0)
        names = dict(s.execute(sa.select(Image.id, Image.name)).all())
    return {
        names[int(i)]: labels.grasps[labels.image_ids == i] for i in np.unique(labels.image_ids)
    }


# --- bad files, found from their headers -----------------------------------------------------


def _truncate_png(root: Path) -> tuple[Path, str]:
    victim = sorted(root.glob("*/*_RGB.png"))[-1]
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * 0.9)])  # IHDR intact, the end of IDAT cut
    return victim, "truncated PNG"


def _integer_depth(root: Path) -> tuple[Path, str]:
    victim = sorted(root.glob("*/*_perfect_depth.tiff"))[-1]
    victim.write_bytes(_encode(".tiff", np.full((1024, 1024), 1500, np.uint16)))
    return victim, "floating-point metres (float32 TIFF), got uint16"


@pytest.mark.parametrize("damage", [_truncate_png, _integer_depth])
def test_bad_file_named_no_version_written_and_this_runs_files_removed(
    damage, migrated_engine, file_store, jacquard_samples, tmp_path
):
    """The last image is the bad one, so every other file was stored before it was read:
    the import names it, writes no row, and takes back what it stored."""
    root = _copy_samples(jacquard_samples, tmp_path / "samples")
    victim, reason = damage(root)
    before = _row_counts(migrated_engine)
    with pytest.raises(FormatError) as info, open_dataset("jacquard", path=root) as dataset:
        import_dataset(migrated_engine, file_store, dataset, name="broken", workers=3)
    assert str(victim) in str(info.value) and reason in str(info.value)
    assert _row_counts(migrated_engine) == before
    with session_scope(migrated_engine) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(DatasetVersion)) == 0
    assert list(file_store.list("")) == []


def test_rerun_skips_what_is_stored_and_a_bad_run_keeps_what_an_earlier_run_stored(
    migrated_engine, file_store, jacquard_samples, tmp_path
):
    root = _copy_samples(jacquard_samples, tmp_path / "samples", objects=3)
    asked = [0]

    def stop_after_some() -> bool:  # the service stopping part-way through
        asked[0] += 1
        return asked[0] > 5

    with open_dataset("jacquard", path=root) as dataset:
        with pytest.raises(ImportInterrupted):
            import_dataset(
                migrated_engine,
                file_store,
                dataset,
                name="resumed",
                workers=2,
                should_stop=stop_after_some,
            )
        kept = {i.key for i in file_store.list("datasets/resumed/")}
        assert kept, "the interrupted run stored nothing: the test would prove nothing"

        # A run that meets a bad file removes its own files, not the earlier run's.
        last = dataset.images[-1]
        good = (root / last.paths["mask"]).read_bytes()
        (root / last.paths["mask"]).write_bytes(good[:100])
        with pytest.raises(FormatError, match=last.paths["mask"]):
            import_dataset(migrated_engine, file_store, dataset, name="resumed", workers=2)
        assert {i.key for i in file_store.list("datasets/resumed/")} == kept

        (root / last.paths["mask"]).write_bytes(good)
        result = import_dataset(migrated_engine, file_store, dataset, name="resumed", workers=2)
    files = 5 * result.images
    assert result.skipped == len(kept) and result.uploaded == files - len(kept)
    assert len(list(file_store.list("datasets/resumed/"))) == files


# --- zip sources, several threads ---------------------------------------------------------


def _zip_of(root: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, f"Jacquard_Dataset_0/{path.relative_to(root).as_posix()}")
    return archive


def test_zip_members_read_from_many_threads_are_the_members(jacquard_samples, tmp_path):
    archive = _zip_of(jacquard_samples, tmp_path / "samples.zip")
    with zipfile.ZipFile(archive) as zf:
        expected = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()}
    source = ZipSource(archive)
    names = source.names() * 3
    threads: set[int] = set()

    def read(name: str) -> tuple[str, str]:
        threads.add(threading.get_ident())
        return name, hashlib.sha256(source.read_bytes(name)).hexdigest()

    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(read, names))
    finally:
        source.close()
    assert len(threads) > 1
    assert all(digest == expected[name] for name, digest in got)


def test_zip_source_imports_what_the_folder_does(
    migrated_engine, file_store, jacquard_samples, tmp_path
):
    archive = _zip_of(jacquard_samples, tmp_path / "samples.zip")
    with open_dataset("jacquard", path=jacquard_samples) as folder:
        a = import_dataset(migrated_engine, file_store, folder, name="folder", workers=4)
    with open_dataset("jacquard", path=archive) as zipped:
        b = import_dataset(migrated_engine, file_store, zipped, name="zipped", workers=4)
    assert (a.images, a.grasps, a.uploaded) == (b.images, b.grasps, b.uploaded)
    assert _images(migrated_engine, a.dataset_id) == _images(migrated_engine, b.dataset_id)
    la, lb = _labels(migrated_engine, a.dataset_id), _labels(migrated_engine, b.dataset_id)
    assert la.keys() == lb.keys()
    for name in la:
        np.testing.assert_array_equal(la[name], lb[name])


# --- Cornell, end to end --------------------------------------------------------------------


def _cornell_rect(x: float, y: float, opening: float, jaw: float) -> str:
    """Four `x y` corner lines of an axis-aligned rectangle (opening along x)."""
    c = corners(np.array([[x, y, 0.0, opening, jaw]]))[0]
    return "".join(f"{px:.2f} {py:.2f}\n" for px, py in c)


def _make_cornell(root: Path) -> dict[int, np.ndarray]:
    """Three Cornell images: with a depth TIFF, with only a point cloud, with no depth.
    Returns each image's expected grasps (N, 5)."""
    rng = np.random.default_rng(7)
    expected: dict[int, np.ndarray] = {}
    for number, folder in ((100, "01"), (101, "01"), (205, "02")):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        rgb = rng.integers(0, 256, (480, 640, 3), np.uint8)
        (d / f"pcd{number:04d}r.png").write_bytes(_encode(".png", rgb))
        rects = [(320.0 + number % 7, 240.0, 40.0, 20.0), (100.0, 90.0, 30.0, 12.0)]
        nan_rect = "NaN NaN\n1 1\n2 2\n3 3\n"
        (d / f"pcd{number:04d}cpos.txt").write_text(
            "".join(_cornell_rect(*r) for r in rects) + nan_rect
        )
        (d / f"pcd{number:04d}cneg.txt").write_text(_cornell_rect(*rects[0]))
        expected[number] = np.array([[x, y, 0.0, o, j] for x, y, o, j in rects])
    (root / "01" / "pcd0100d.tiff").write_bytes(
        _encode(".tiff", np.full((480, 640), 0.6, np.float32))
    )
    (root / "01" / "pcd0101.txt").write_text(
        "# .PCD v.7 - Point Cloud Data file format\nVERSION .7\nFIELDS x y z rgb index\n"
        "SIZE 4 4 4 4 4\nTYPE F F F F U\nCOUNT 1 1 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n"
        "DATA ascii\n300 400 0 4.2e+06 641\n0 0 1500 4.2e+06 0\n"
    )
    (root / "z.txt").write_text("100 7 mug\n101 7 mug\n205 9 stapler\n")
    return expected


def test_cornell_imports_end_to_end_into_the_database(migrated_engine, file_store, tmp_path):
    root = tmp_path / "cornell"
    expected = _make_cornell(root)
    with open_dataset("cornell", path=root) as dataset:
        result = import_dataset(migrated_engine, file_store, dataset, name="cornell", workers=2)
    assert (result.images, result.objects, result.grasps) == (3, 2, 6)
    assert (result.uploaded, result.skipped) == (3 + 3 + 2, 0)  # rgb+grasps each, 2 depths

    with session_scope(migrated_engine) as s:
        assert (
            s.scalar(sa.select(Dataset.latest_version).where(Dataset.id == result.dataset_id)) == 0
        )
        rows = {
            r.name: r
            for r in s.scalars(sa.select(Image).where(Image.dataset_id == result.dataset_id))
        }
        objects = dict(
            s.execute(
                sa.text("SELECT id, name FROM objects WHERE dataset_id = :d"),
                {"d": result.dataset_id},
            ).all()
        )
    assert set(rows) == {"pcd0100", "pcd0101", "pcd0205"}
    assert {objects[r.object_id] for r in rows.values()} == {"7", "9"}
    assert rows["pcd0100"].split == rows["pcd0101"].split  # one object, one side
    for name, row in rows.items():
        assert (row.width, row.height) == (640, 480)
        rgb = (root / ("01" if name != "pcd0205" else "02") / f"{name}r.png").read_bytes()
        assert row.checksum == hashlib.sha256(rgb).hexdigest()
        assert file_store.get_bytes(row.rgb_key) == rgb
    assert rows["pcd0205"].depth_key is None
    np.testing.assert_array_equal(
        decode_depth(file_store.get_bytes(rows["pcd0100"].depth_key)),
        np.full((480, 640), 0.6, np.float32),
    )
    from_cloud = decode_depth(file_store.get_bytes(rows["pcd0101"].depth_key))
    assert from_cloud[1, 1] == pytest.approx(0.5) and from_cloud[0, 0] == pytest.approx(1.5)
    labels = _labels(migrated_engine, result.dataset_id)
    for number, grasps in expected.items():
        np.testing.assert_allclose(labels[f"pcd{number:04d}"], grasps, atol=0.01)


def test_cornell_bad_file_is_named_and_nothing_written(migrated_engine, file_store, tmp_path):
    root = tmp_path / "cornell"
    _make_cornell(root)
    bad = root / "02" / "pcd0205cpos.txt"
    bad.write_text("1 2\n3 x\n")
    before = _row_counts(migrated_engine)
    with pytest.raises(FormatError, match=f"{bad}:2"), open_dataset("cornell", path=root) as ds:
        import_dataset(migrated_engine, file_store, ds, name="cornell", workers=2)
    assert _row_counts(migrated_engine) == before
    assert list(file_store.list("")) == []


# --- what a header cannot decide: decoded in a process pool ---------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_undecided_files_are_decoded_in_a_process_pool(
    migrated_engine, file_store, jacquard_samples, tmp_path
):
    """A JPEG stored as an RGB file is accepted (stored byte for byte) after a decode; a
    palette-PNG mask is refused after one, naming the file."""
    root = _copy_samples(jacquard_samples, tmp_path / "samples", objects=1)
    rgb = sorted(root.glob("*/*_RGB.png"))[0]
    jpeg = _encode(".jpg", cv2.imread(str(rgb)))
    rgb.write_bytes(jpeg)
    with open_dataset("jacquard", path=root) as dataset:
        result = import_dataset(migrated_engine, file_store, dataset, name="jpeg", workers=2)
    with session_scope(migrated_engine) as s:
        key = s.scalar(sa.select(Image.rgb_key).where(Image.name == rgb.name[: -len("_RGB.png")]))
    assert file_store.get_bytes(key) == jpeg and result.images == len(
        list(root.glob("*/*_RGB.png"))
    )

    mask = sorted(root.glob("*/*_mask.png"))[-1]
    indices = (cv2.imread(str(mask), cv2.IMREAD_UNCHANGED) > 0).astype(np.uint8)
    mask.write_bytes(_palette_png(indices))
    with pytest.raises(FormatError, match=f"{mask}: mask must have 1 channel"):
        with open_dataset("jacquard", path=root) as dataset:
            import_dataset(migrated_engine, file_store, dataset, name="palette", workers=2)


def _palette_png(indices: np.ndarray) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    height, width = indices.shape
    rows = b"".join(b"\x00" + indices[y].tobytes() for y in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255]))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --- version 0 written in batches --------------------------------------------------------


def test_version0_written_in_small_batches_is_the_same(
    migrated_engine, file_store, jacquard_samples
):
    """Batches of 2 images split objects across batches; the rows are those of one batch."""
    with open_dataset("jacquard", path=jacquard_samples) as dataset:
        whole = import_dataset(migrated_engine, file_store, dataset, name="whole", workers=2)
        with stage_import(file_store, dataset, name="batched", workers=2) as staged:
            assert staged.skipped == 0
            with session_scope(migrated_engine) as s:
                batched = write_version0(s, staged, batch_images=2)
    assert _images(migrated_engine, whole.dataset_id) == _images(migrated_engine, batched)
    la, lb = _labels(migrated_engine, whole.dataset_id), _labels(migrated_engine, batched)
    assert la.keys() == lb.keys()
    for name in la:
        np.testing.assert_array_equal(la[name], lb[name])
    with session_scope(migrated_engine) as s:
        versions = V.list_versions(s, batched)
        n_objects = s.scalar(
            sa.text("SELECT count(*) FROM objects WHERE dataset_id = :d"), {"d": batched}
        )
    assert [(v.number, v.image_count, v.grasp_count) for v in versions] == [
        (0, whole.images, whole.grasps)
    ]
    assert n_objects == whole.objects
