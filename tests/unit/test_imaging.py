"""Image decoding and validation, the letterbox and the network input."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from regrasp.grasp.imaging import (
    Letterbox,
    decode_depth,
    decode_mask,
    decode_rgb,
    depth_valid,
    image_size,
    network_input,
    normalize_depth,
    normalize_rgb,
)
from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y
from regrasp.platform.errors import InvalidInput


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _rgb(height: int = 48, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


@pytest.fixture(scope="module")
def stereo_tiff(jacquard_samples: Path) -> bytes:
    return next(jacquard_samples.glob("*/*_stereo_depth.tiff")).read_bytes()


# --- decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_decode_rgb_returns_rgb_order(ext: str) -> None:
    rgb = np.zeros((40, 50, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    data = _encode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = decode_rgb(data)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert abs(int(out[..., 0].mean()) - 200) <= 2 and out[..., 2].max() <= 2
    assert image_size(data) == (50, 40)


def test_decode_rgb_png_is_lossless_and_drops_alpha() -> None:
    rgb = _rgb()
    assert np.array_equal(decode_rgb(_encode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))), rgb)
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(decode_rgb(_encode(".png", bgra)), rgb)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8), np.uint8), "3 channels"),
        (np.zeros((8, 8, 3), np.uint16), "8-bit"),
    ],
)
def test_decode_rgb_refuses_wrong_channels_and_dtype(image: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_rgb(_encode(".png", image))


def test_decode_depth_round_trips_float32_tiff(stereo_tiff: bytes) -> None:
    depth = np.random.default_rng(1).uniform(0.5, 2.0, (30, 40)).astype(np.float32)
    depth[3, 4] = -1.0
    out = decode_depth(_encode(".tiff", depth))
    assert out.dtype == np.float32 and np.array_equal(out, depth)
    real = decode_depth(stereo_tiff)  # LZW float32 metres with −1 holes
    assert real.shape == (1024, 1024) and real.dtype == np.float32
    assert (real == -1).any() and 1.0 < np.median(real[real > 0]) < 2.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_decode_depth_refuses_integer_depth(dtype: type) -> None:
    with pytest.raises(InvalidInput, match="floating-point"):
        decode_depth(_encode(".tiff", np.ones((8, 8), dtype)))


def test_decode_depth_refuses_multichannel() -> None:
    with pytest.raises(InvalidInput, match="1 channel"):
        decode_depth(_encode(".tiff", np.ones((8, 8, 3), np.float32)))


def test_decode_mask() -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:9] = 255
    out = decode_mask(_encode(".png", mask))
    assert out.dtype == bool and np.array_equal(out, mask > 0)
    with pytest.raises(InvalidInput, match="1 channel"):
        decode_mask(_encode(".png", np.dstack([mask] * 3)))


@pytest.mark.parametrize("decoder", [decode_rgb, decode_depth, decode_mask])
@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"],
)
def test_corrupt_or_empty_bytes_are_refused(decoder, data: bytes) -> None:
    with pytest.raises(InvalidInput):
        decoder(data)


def test_truncated_files_are_refused(stereo_tiff: bytes) -> None:
    for cut in (len(stereo_tiff) // 2, len(stereo_tiff) - 20, 100):
        with pytest.raises(InvalidInput):
            decode_depth(stereo_tiff[:cut])
    for ext, image in ((".png", _rgb(200, 200)), (".jpg", _rgb(200, 200))):
        data = _encode(ext, image)
        with pytest.raises(InvalidInput):
            decode_rgb(data[: len(data) // 2])


def test_absurd_sizes_are_refused_from_the_header() -> None:
    # A PNG header claiming 100000² pixels: refused before any pixel is allocated.
    with pytest.raises(InvalidInput, match="exceeds"):
        decode_rgb(_png_header(100_000, 100_000) + b"\x00" * 64)
    data = _encode(".png", _rgb(48, 64))
    assert decode_rgb(data, max_side=64).shape == (48, 64, 3)
    with pytest.raises(InvalidInput, match="exceeds the largest side 63"):
        decode_rgb(data, max_side=63)
    with pytest.raises(InvalidInput, match="empty size"):
        decode_rgb(_png_header(0, 10))


# --- letterbox ----------------------------------------------------------------------------


def test_letterbox_round_trip_is_identity_for_640x480() -> None:
    box = Letterbox(640, 480, 300)
    assert box.scale == pytest.approx(300 / 640)
    assert box.resized == (300, 225) and box.offset == (0, 37)
    rng = np.random.default_rng(3)
    grasps = np.column_stack(
        [
            rng.uniform(0, 640, 50),
            rng.uniform(0, 480, 50),
            rng.uniform(-90, 90, 50),
            rng.uniform(5, 200, 50),
            rng.uniform(5, 80, 50),
        ]
    )
    net = box.to_network(grasps)
    np.testing.assert_array_equal(net[:, THETA], grasps[:, THETA])  # angles preserved
    np.testing.assert_allclose(net[:, [OPENING, JAW]], grasps[:, [OPENING, JAW]] * box.scale)
    np.testing.assert_allclose(box.to_image(net), grasps, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize(("width", "height"), [(640, 480), (480, 640), (1024, 1024)])
def test_letterbox_maps_points_onto_the_resized_pixels(width: int, height: int) -> None:
    # A bright square in the image lands where to_network says its centre goes.
    image = np.zeros((height, width), np.float32)
    cx, cy = 0.6 * width, 0.3 * height
    image[int(cy) - 10 : int(cy) + 11, int(cx) - 10 : int(cx) + 11] = 1.0
    centre = np.array([[int(cx), int(cy), 0.0, 1.0, 1.0]])
    box = Letterbox(width, height, 300)
    view = box.apply(image)
    assert view.shape == (300, 300)
    rows, cols = np.mgrid[0:300, 0:300]
    seen = np.array([(cols * view).sum(), (rows * view).sum()]) / view.sum()
    np.testing.assert_allclose(seen, box.to_network(centre)[0, [X, Y]], atol=0.05)
    left, top = box.offset
    assert not view[:top].any() and not view[:, :left].any()


def test_square_letterbox_is_a_plain_resize() -> None:
    image = _rgb(1024, 1024)
    box = Letterbox.for_image(image)
    assert box.offset == (0, 0) and box.resized == (300, 300)
    np.testing.assert_array_equal(
        box.apply(image), cv2.resize(image, (300, 300), interpolation=cv2.INTER_AREA)
    )


def test_letterbox_refuses_bad_sizes() -> None:
    with pytest.raises(InvalidInput):
        Letterbox(0, 10)
    with pytest.raises(InvalidInput):
        Letterbox(64, 48).apply(np.zeros((10, 10)))


# --- normalisation and network input ------------------------------------------------------


def test_normalize_depth_uses_valid_pixels_and_fills_holes() -> None:
    depth = np.full((40, 40), 1.5, np.float32)
    depth[:, 20:] = 1.7
    depth[10:15, 5:10] = -1.0  # stereo hole inside the 1.5 half
    depth[0, 0] = np.nan
    depth[30, 30] = 0.0
    valid = depth_valid(depth)
    assert valid.sum() == 40 * 40 - 25 - 2
    mean = depth[valid].mean()
    out = normalize_depth(depth)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out[valid], depth[valid] - mean, atol=1e-6)
    # The hole is filled from its surroundings (the 1.5 plane), not left at −1 − mean.
    np.testing.assert_allclose(out[10:15, 5:10], 1.5 - mean, atol=1e-3)


def test_normalize_depth_clips_and_refuses_all_invalid() -> None:
    depth = np.ones((10, 10), np.float32)
    depth[0, 0] = 50.0
    out = normalize_depth(depth)
    assert out.max() == 1.0 and out.min() >= -1.0
    with pytest.raises(InvalidInput, match="no valid pixel"):
        normalize_depth(np.full((5, 5), -1.0, np.float32))
    with pytest.raises(InvalidInput):
        normalize_depth(np.ones((5, 5), np.uint16))


def test_normalize_rgb_is_zero_centred() -> None:
    out = normalize_rgb(_rgb())
    assert out.dtype == np.float32 and out.shape == (48, 64, 3)
    assert abs(float(out.mean())) < 1e-6 and out.max() - out.min() <= 1.0


def test_network_input_channels_and_order() -> None:
    depth = np.random.default_rng(4).uniform(1.0, 1.2, (480, 640)).astype(np.float32)
    rgb = _rgb(480, 640)
    d = network_input(depth, size=300)
    c = network_input(rgb=rgb, size=300, channels="rgb")
    both = network_input(depth, rgb, size=300, channels="rgbd")
    assert d.shape == (1, 300, 300) and c.shape == (3, 300, 300) and both.shape == (4, 300, 300)
    assert all(x.dtype == np.float32 for x in (d, c, both))
    np.testing.assert_array_equal(both[:1], d)  # depth first, then R, G, B
    np.testing.assert_array_equal(both[1:], c)
    top = Letterbox(640, 480).offset[1]
    assert not both[:, :top].any()  # padding is 0, the mean


def test_network_input_refuses_inconsistent_requests() -> None:
    depth = np.ones((48, 64), np.float32)
    with pytest.raises(InvalidInput, match="channels"):
        network_input(depth, channels="bgr")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="RGB"):
        network_input(depth, channels="rgbd")
    with pytest.raises(InvalidInput, match="differ"):
        network_input(depth, _rgb(40, 64), channels="rgbd")


def test_network_input_on_real_stereo_depth(stereo_tiff: bytes) -> None:
    depth = decode_depth(stereo_tiff)
    out = network_input(depth)
    assert out.shape == (1, 300, 300) and np.isfinite(out).all()
    assert out.min() >= -1.0 and out.max() <= 1.0
    # Valid pixels keep their depth relative to the valid mean (−1 holes do not drag it).
    valid = depth_valid(depth)
    small = cv2.resize(np.where(valid, depth, 0), (300, 300), interpolation=cv2.INTER_AREA)
    weight = cv2.resize(valid.astype(np.float32), (300, 300), interpolation=cv2.INTER_AREA)
    full = weight > 0.999
    expected = np.clip(small[full] / weight[full] - depth[valid].mean(), -1, 1)
    np.testing.assert_allclose(out[0][full], expected, atol=2e-3)
