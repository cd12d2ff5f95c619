"""Header-level image checks agree with a full decode, and catch broken files without one."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from regrasp.data.formats.headers import check_image, decode_size, read_header
from regrasp.platform.errors import InvalidInput

MAX_SIDE = 8192


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _verdict(kind: str, data: bytes, check) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    try:
        return "ok", check(kind, data)
    except InvalidInput as exc:
        return "refused", str(exc).split(": ")[-1]


# Every (kind, encoding) pair: the header's verdict is the decoder's, word for word.
ARRAYS = {
    "rgb8": np.full((6, 9, 3), 200, np.uint8),
    "rgba8": np.full((6, 9, 4), 200, np.uint8),
    "grey8": np.full((6, 9), 200, np.uint8),
    "grey16": np.full((6, 9), 2000, np.uint16),
    "rgb16": np.full((6, 9, 3), 2000, np.uint16),
    "f32": np.full((6, 9), 1.5, np.float32),
    "f64": np.full((6, 9), 1.5, np.float64),
    "f32x3": np.full((6, 9, 3), 1.5, np.float32),
    "u16": np.full((6, 9), 1500, np.uint16),
}
CASES = [
    (kind, ext, name)
    for kind in ("rgb", "depth", "mask")
    for ext, names in (
        (".png", ("rgb8", "rgba8", "grey8", "grey16", "rgb16")),
        (".tiff", tuple(ARRAYS)),
    )
    for name in names
]


@pytest.mark.parametrize(("kind", "ext", "name"), CASES)
def test_header_verdict_is_the_decoders(kind: str, ext: str, name: str) -> None:
    data = _encode(ext, ARRAYS[name])
    by_header = _verdict(kind, data, lambda k, d: check_image(k, d, max_side=MAX_SIDE))
    by_decode = _verdict(kind, data, lambda k, d: decode_size(k, d, MAX_SIDE))
    assert by_header[0] != "ok" or by_header[1] is not None, "these headers decide"
    assert by_header == by_decode


def test_real_samples_pass_from_their_headers(jacquard_samples: Path) -> None:
    kinds = {"_RGB.png": "rgb", "_mask.png": "mask", "_depth.tiff": "depth"}
    checked = 0
    for path in sorted(jacquard_samples.glob("*/*")):
        kind = next((k for s, k in kinds.items() if path.name.endswith(s)), None)
        if kind is None:
            continue
        data = path.read_bytes()
        assert check_image(kind, data, max_side=MAX_SIDE) == decode_size(kind, data, MAX_SIDE)
        checked += 1
    assert checked == 33 * 4


def test_truncated_png_is_refused_from_its_chunks() -> None:
    rng = np.random.default_rng(0)
    data = _encode(".png", rng.integers(0, 256, (64, 64, 3), np.uint8))
    with pytest.raises(InvalidInput, match="truncated PNG"):
        check_image("rgb", data[: len(data) // 2], max_side=MAX_SIDE)
    with pytest.raises(InvalidInput, match="truncated PNG"):
        check_image("rgb", data[:-12], max_side=MAX_SIDE)  # only IEND missing


def test_corrupt_png_byte_fails_its_crc() -> None:
    rng = np.random.default_rng(1)
    data = bytearray(_encode(".png", rng.integers(0, 256, (64, 64, 3), np.uint8)))
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the image data
    with pytest.raises(InvalidInput, match="fails its CRC"):
        check_image("rgb", bytes(data), max_side=MAX_SIDE)


def test_truncated_tiff_is_refused_from_its_strips() -> None:
    rng = np.random.default_rng(2)
    depth = rng.uniform(0.5, 1.5, (64, 64)).astype(np.float32)
    data = _tiff_ifd_first(depth)
    assert decode_size("depth", data, MAX_SIDE) == (64, 64)  # a valid TIFF as written
    header = read_header(data)
    assert (header.width, header.height, header.dtype, header.channels) == (64, 64, "float32", 1)
    with pytest.raises(InvalidInput, match="truncated TIFF: strip 0"):
        check_image("depth", data[:-100], max_side=MAX_SIDE)
    # OpenCV writes its IFD after the pixels: a cut there loses the header itself.
    written = _encode(".tiff", depth)
    with pytest.raises(InvalidInput, match="truncated"):
        check_image("depth", written[: len(written) // 2], max_side=MAX_SIDE)


def _tiff_ifd_first(image: np.ndarray) -> bytes:
    """An uncompressed one-strip float32 TIFF, its IFD before the pixels (as many tools write)."""
    height, width = image.shape
    pixels = image.astype("<f4").tobytes()
    tags = [  # (tag, type SHORT=3 / LONG=4, value)
        (256, 4, width),
        (257, 4, height),
        (258, 3, 32),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 0),  # strip offset, filled below
        (277, 3, 1),
        (278, 4, height),
        (279, 4, len(pixels)),
        (339, 3, 3),
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    start = 8 + ifd_size
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = start if tag == 273 else value
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + pixels


def test_sides_beyond_the_limit_and_other_formats_are_refused() -> None:
    data = _encode(".png", np.zeros((8, 40, 3), np.uint8))
    with pytest.raises(InvalidInput, match="exceeds the largest side 32"):
        check_image("rgb", data, max_side=32)
    with pytest.raises(InvalidInput, match="not a PNG, JPEG or TIFF"):
        check_image("rgb", b"GIF89a" + b"\0" * 40, max_side=MAX_SIDE)


def test_what_a_header_cannot_decide_is_left_to_a_decode() -> None:
    """A JPEG (no checksum over its data) and a palette PNG: None, then a decode decides."""
    jpeg = _encode(".jpg", np.full((10, 12, 3), 90, np.uint8))
    assert check_image("rgb", jpeg, max_side=MAX_SIDE) is None
    assert decode_size("rgb", jpeg, MAX_SIDE) == (12, 10)
    palette = _palette_png(np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert check_image("mask", palette, max_side=MAX_SIDE) is None
    with pytest.raises(InvalidInput, match="mask must have 1 channel"):
        decode_size("mask", palette, MAX_SIDE)


def _palette_png(indices: np.ndarray) -> bytes:
    """An 8-bit palette PNG (colour type 3) of `indices`, written by hand (OpenCV writes none)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    height, width = indices.shape
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    palette = bytes(range(256)) * 3
    rows = b"".join(b"\x00" + indices[y].tobytes() for y in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"PLTE", palette[:768])
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
