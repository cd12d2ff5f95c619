"""Dataset readers: the 33 real Jacquard samples, zip archives, broken files, Cornell."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from regrasp.data.formats import check_member_name
from regrasp.data.formats.cornell import parse_pcd_depth, scan_cornell
from regrasp.data.formats.jacquard import KINDS, SUFFIXES, JacquardImage, scan_jacquard
from regrasp.grasp.rectangles import corners, from_corners, read_jacquard, write_jacquard
from regrasp.platform.errors import FormatError

OBJECT = "0123abcd"


def _write_image(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(buf.tobytes())


def _make_jacquard(root: Path, *, objects: int = 2, images: int = 2, size: int = 32) -> Path:
    """A tiny Jacquard-layout dataset: `objects` folders of `images` images of `size`²."""
    rng = np.random.default_rng(0)
    for o in range(objects):
        obj = f"{OBJECT}{o}"
        folder = root / obj
        folder.mkdir(parents=True)
        for i in range(images):
            stem = folder / f"{i}_{obj}"
            _write_image(Path(f"{stem}_RGB.png"), rng.integers(0, 256, (size, size, 3), np.uint8))
            depth = rng.uniform(1.4, 1.6, (size, size)).astype(np.float32)
            _write_image(Path(f"{stem}_perfect_depth.tiff"), depth)
            depth[0, :4] = -1
            _write_image(Path(f"{stem}_stereo_depth.tiff"), depth)
            _write_image(Path(f"{stem}_mask.png"), (rng.random((size, size)) > 0.5) * 255)
            write_jacquard(Path(f"{stem}_grasps.txt"), [[16, 16, 10.5, 8, 4], [16, 16, 10.5, 8, 6]])
    return root


# --- the real samples ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(jacquard_samples: Path):
    with scan_jacquard(jacquard_samples) as dataset:
        yield dataset


@pytest.fixture(scope="module")
def loaded(samples) -> list[dict]:
    """Every real image decoded once for the module."""
    return [
        {
            "image": image,
            "rgb": image.load_rgb(),
            "perfect": image.load_depth("perfect"),
            "stereo": image.load_depth("stereo"),
            "mask": image.load_mask(),
            "grasps": image.load_grasps(),
        }
        for image in samples
    ]


def test_scan_finds_33_images_of_7_objects(samples, jacquard_samples: Path) -> None:
    assert len(samples) == 33
    assert len(samples.objects) == 7
    assert set(samples.objects) == {p.name for p in jacquard_samples.iterdir() if p.is_dir()}
    assert sum(len(v) for v in samples.by_object().values()) == 33
    for image in samples:
        assert image.name.split("_", 1) == [str(image.index), image.object_id]
        assert set(image.paths) == set(KINDS)
        for kind in KINDS:
            path = Path(image.location(kind))
            assert path.is_file() and path.parent.name == image.object_id
            assert path.name == image.name + SUFFIXES[kind]
    keys = [(image.object_id, image.index) for image in samples]
    assert keys == sorted(keys)


def test_every_grasps_file_reads_and_round_trips(loaded, tmp_path: Path) -> None:
    total = 0
    for item in loaded:
        grasps = item["grasps"]
        path = Path(item["image"].location("grasps"))
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        assert grasps.shape == (len(lines), 5) and len(lines) >= 1
        # Values exactly as written in the file.
        np.testing.assert_array_equal(grasps[0], [float(v) for v in lines[0].split(";")])
        out = tmp_path / path.name
        write_jacquard(out, grasps)
        np.testing.assert_array_equal(read_jacquard(out), grasps)
        total += len(grasps)
    print(f"{total} grasps in {len(loaded)} real grasps files")


def test_all_rectangle_corners_lie_inside_the_image(loaded) -> None:
    for item in loaded:
        height, width = item["rgb"].shape[:2]
        quads = corners(item["grasps"])
        assert quads[..., 0].min() >= 0 and quads[..., 0].max() <= width - 1, item["image"].name
        assert quads[..., 1].min() >= 0 and quads[..., 1].max() <= height - 1, item["image"].name
        np.testing.assert_allclose(from_corners(quads)[:, :2], item["grasps"][:, :2], atol=1e-9)


def test_pixels_load_with_the_right_shapes_and_dtypes(loaded) -> None:
    for item in loaded:
        assert item["rgb"].shape == (1024, 1024, 3) and item["rgb"].dtype == np.uint8
        for kind in ("perfect", "stereo"):
            assert item[kind].shape == (1024, 1024) and item[kind].dtype == np.float32
        assert item["mask"].shape == (1024, 1024) and item["mask"].dtype == bool
        assert item["mask"].any() and not item["mask"].all()
        perfect = item["perfect"]
        assert np.isfinite(perfect).all() and 1.0 < perfect.min() and perfect.max() < 2.0
        assert set(np.unique(item["stereo"][item["stereo"] <= 0])) <= {-1.0}


def test_validate_reads_the_real_samples(samples) -> None:
    seen: list[int] = []
    samples.validate(progress=lambda done, total: seen.append(done))
    assert seen == list(range(1, 34))


# --- zip archives -------------------------------------------------------------------------


def test_zip_reads_the_same_as_the_folder(jacquard_samples: Path, tmp_path: Path) -> None:
    folder = next(p for p in sorted(jacquard_samples.iterdir()) if p.is_dir())
    archive = tmp_path / "jacquard.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"Jacquard_Dataset_0/{folder.name}/{path.name}")
        zf.writestr("Jacquard_Dataset_0/README.txt", "not an image")
    with scan_jacquard(folder.parent) as on_disk, scan_jacquard(archive) as zipped:
        expected = on_disk.by_object()[folder.name]
        assert [im.name for im in zipped] == [im.name for im in expected]
        for a, b in zip(zipped, expected, strict=True):
            member = f"Jacquard_Dataset_0/{folder.name}/{b.name}_RGB.png"
            assert a.location("rgb") == f"{archive}:{member}"
            np.testing.assert_array_equal(a.load_grasps(), b.load_grasps())
        first = zipped[0]
        np.testing.assert_array_equal(first.load_depth("stereo"), expected[0].load_depth("stereo"))
        np.testing.assert_array_equal(first.load_rgb(), expected[0].load_rgb())
        zipped.validate()


@pytest.mark.parametrize(
    "member", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt", "C:/evil.txt", "a\\..\\..\\x"]
)
def test_zip_slip_members_are_refused(tmp_path: Path, member: str) -> None:
    root = _make_jacquard(tmp_path / "src", objects=1, images=1)
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*.*")):
            zf.write(path, path.relative_to(root).as_posix())
        zf.writestr(zipfile.ZipInfo(member), b"x")
    with pytest.raises(FormatError) as err:
        scan_jacquard(archive)
    assert repr(member) in str(err.value) and str(archive) in str(err.value)
    assert check_member_name("obj/0_obj_RGB.png") == "obj/0_obj_RGB.png"


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "data.zip"
    bogus.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FormatError, match="data.zip"):
        scan_jacquard(bogus)
    with pytest.raises(FormatError, match="no such folder"):
        scan_jacquard(tmp_path / "absent")


# --- broken datasets ----------------------------------------------------------------------


def test_synthetic_dataset_scans_and_validates(tmp_path: Path) -> None:
    with scan_jacquard(_make_jacquard(tmp_path)) as dataset:
        assert len(dataset) == 4 and dataset.objects == (f"{OBJECT}0", f"{OBJECT}1")
        dataset.validate()
        assert dataset[0].load_grasps().shape == (2, 5)


def test_missing_file_is_named(tmp_path: Path) -> None:
    root = _make_jacquard(tmp_path)
    missing = root / f"{OBJECT}1" / f"1_{OBJECT}1_stereo_depth.tiff"
    missing.unlink()
    with pytest.raises(FormatError, match=str(missing).replace("\\", "\\\\")):
        scan_jacquard(root)
    # A reader that does not need stereo depth may scan without it.
    dataset = scan_jacquard(root, required=("rgb", "perfect_depth", "mask", "grasps"))
    image = next(im for im in dataset if "stereo_depth" not in im.paths)
    with pytest.raises(FormatError, match="_stereo_depth.tiff"):
        image.load_depth("stereo")


def test_malformed_grasps_line_is_named(tmp_path: Path) -> None:
    root = _make_jacquard(tmp_path)
    path = root / f"{OBJECT}0" / f"1_{OBJECT}0_grasps.txt"
    path.write_text("16;16;10;8;4\n16;16;ten;8;4\n")
    image = next(im for im in scan_jacquard(root) if im.name == f"1_{OBJECT}0")
    with pytest.raises(FormatError, match=f"{path}:2"):
        image.load_grasps()
    with pytest.raises(FormatError, match=str(path)):
        scan_jacquard(root).validate()


def test_corrupt_png_is_named(tmp_path: Path) -> None:
    root = _make_jacquard(tmp_path)
    path = root / f"{OBJECT}1" / f"0_{OBJECT}1_RGB.png"
    path.write_bytes(path.read_bytes()[:60])
    image = next(im for im in scan_jacquard(root) if im.name == f"0_{OBJECT}1")
    with pytest.raises(FormatError, match=str(path)):
        image.load_rgb()
    mask = root / f"{OBJECT}0" / f"0_{OBJECT}0_mask.png"
    mask.write_bytes(b"garbage")
    with pytest.raises(FormatError, match=str(mask)):
        scan_jacquard(root).validate()


def test_wrong_dtype_and_size_mismatch_are_named(tmp_path: Path) -> None:
    root = _make_jacquard(tmp_path)
    depth = root / f"{OBJECT}0" / f"0_{OBJECT}0_perfect_depth.tiff"
    _write_image(depth, np.ones((32, 32), np.uint16))
    image: JacquardImage = scan_jacquard(root)[0]
    with pytest.raises(FormatError, match=f"{depth}.*floating-point"):
        image.load_depth()
    _write_image(depth, np.ones((16, 32), np.float32))
    with pytest.raises(FormatError, match=f"{depth}: size 32×16 differs"):
        image.validate()


def test_bad_names_and_duplicates_are_refused(tmp_path: Path) -> None:
    root = _make_jacquard(tmp_path)
    other = root / "copy"
    other.mkdir()
    dup = other / f"0_{OBJECT}0_grasps.txt"
    dup.write_text("1;1;0;2;2\n")
    with pytest.raises(FormatError, match="also appears"):
        scan_jacquard(root)
    dup.unlink()
    (other / "weird_grasps.txt").write_text("1;1;0;2;2\n")
    with pytest.raises(FormatError, match="weird_grasps.txt"):
        scan_jacquard(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError, match="no Jacquard image"):
        scan_jacquard(empty)


# --- Cornell ------------------------------------------------------------------------------


def _make_cornell(root: Path) -> Path:
    rng = np.random.default_rng(5)
    rect = "100 100\n140 100\n140 120\n100 120\n"
    nan_rect = "NaN NaN\n1 1\n2 2\n3 3\n"
    for number, folder in ((100, "01"), (101, "01"), (205, "02")):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        _write_image(d / f"pcd{number:04d}r.png", rng.integers(0, 256, (480, 640, 3), np.uint8))
        (d / f"pcd{number:04d}cpos.txt").write_text(rect + nan_rect)
        (d / f"pcd{number:04d}cneg.txt").write_text(rect)
    _write_image(root / "01" / "pcd0100d.tiff", np.full((480, 640), 0.6, np.float32))
    (root / "02" / "pcd0205.txt").write_text(
        "# .PCD v.7 - Point Cloud Data file format\nVERSION .7\nFIELDS x y z rgb index\n"
        "SIZE 4 4 4 4 4\nTYPE F F F F U\nCOUNT 1 1 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n"
        "DATA ascii\n300 400 0 4.2e+06 641\n0 0 1500 4.2e+06 0\n"
    )
    return root


def test_cornell_scan_loads_and_maps_objects(tmp_path: Path) -> None:
    root = _make_cornell(tmp_path / "cornell")
    dataset = scan_cornell(root)
    assert [im.name for im in dataset] == ["pcd0100", "pcd0101", "pcd0205"]
    assert dataset.objects == ("pcd0100", "pcd0101", "pcd0205")  # no mapping: one each
    grasps = dataset[0].load_grasps()  # the NaN rectangle is skipped
    np.testing.assert_allclose(grasps, [[120, 110, 0, 40, 20]])
    assert dataset[0].load_rgb().shape == (480, 640, 3)
    np.testing.assert_array_equal(dataset[0].load_depth(), np.full((480, 640), 0.6, np.float32))
    depth = dataset[2].load_depth()  # from the point cloud, millimetres → metres
    assert depth[1, 1] == pytest.approx(0.5) and depth[0, 0] == pytest.approx(1.5)
    assert (depth > 0).sum() == 2
    with pytest.raises(FormatError, match="neither"):
        dataset[1].load_depth()
    dataset.validate()

    (root / "z.txt").write_text("100 7 mug\n101 7 mug\n205 9 stapler\n")
    mapped = scan_cornell(root)
    assert mapped.objects == ("7", "9")
    assert [im.name for im in mapped.by_object()["7"]] == ["pcd0100", "pcd0101"]
    with pytest.raises(FormatError, match="no object id"):
        scan_cornell(root, object_ids={100: "7"})


def test_cornell_errors_name_the_file(tmp_path: Path) -> None:
    root = _make_cornell(tmp_path / "cornell")
    (root / "01" / "pcd0101cpos.txt").unlink()
    with pytest.raises(FormatError, match=str(root / "01" / "pcd0101cpos.txt")):
        scan_cornell(root)
    (root / "01" / "pcd0101r.png").unlink()
    bad = root / "01" / "pcd0100cpos.txt"
    bad.write_text("1 2\n3 x\n")
    with pytest.raises(FormatError, match=f"{bad}:2"):
        scan_cornell(root)[0].load_grasps()
    (root / "z.txt").write_text("a b\n")
    with pytest.raises(FormatError, match="z.txt:1"):
        scan_cornell(root)
    with pytest.raises(FormatError, match="outside"):
        parse_pcd_depth("FIELDS x y z rgb index\nDATA ascii\n1 1 1 0 999999\n", source="p.txt")
