"""Image checks from the file's structure, without decoding a pixel.

An importer must refuse a truncated PNG or a depth TIFF of the wrong dtype, but decoding
every 1024² image only to check it costs ~70% of an import's CPU. What decoding would tell
is, for the formats datasets use, in the header and the file's own structure:

- PNG: IHDR gives size, bit depth and colour type (hence dtype and channels as OpenCV's
  `IMREAD_UNCHANGED` returns them); every chunk carries a CRC-32 of its bytes, and the file
  must end with IEND. Walking the chunks and checking every CRC (zlib's C CRC, ~GB/s)
  catches truncation and corruption.
- TIFF: the first IFD gives size, samples per pixel, bits per sample, sample format
  (float or integer) and compression; every strip or tile must lie inside the file, so a
  truncated file is caught.

`check_image` returns the size when the structure decides the file is a valid image of
the wanted kind, raises `InvalidInput` (with the decoder's own wording) when it decides it
is not, and returns None when only a decode can tell (a JPEG, a palette PNG, an exotic
TIFF compression); `decode_size` then decodes it, which an importer runs in a process pool.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from regrasp.platform.errors import InvalidInput

__all__ = ["ImageHeader", "ImageKind", "check_image", "decode_size", "read_header"]

ImageKind = Literal["rgb", "depth", "mask"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Valid PNG (colour type → bit depths), from the PNG specification.
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
#: TIFF compressions OpenCV's libtiff decodes: none, LZW, Adobe deflate, deflate, PackBits.
_TIFF_COMPRESSIONS = frozenset({1, 5, 8, 32946, 32773})
#: TIFF field type → struct format of one value (BYTE, SHORT, LONG, LONG8).
_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}


@dataclass(frozen=True)
class ImageHeader:
    """What a file's structure says about the array a decoder would return.

    `dtype` (numpy name) and `channels` are None where the header cannot tell for sure.
    """

    format: Literal["png", "tiff", "jpeg"]
    width: int
    height: int
    dtype: str | None
    channels: int | None


def read_header(data: bytes | memoryview) -> ImageHeader:
    """The header of a PNG or TIFF, its structure checked; InvalidInput if it is broken.

    A JPEG's structure is not checked here (its entropy-coded data has no checksum): its
    header has size only, and `dtype`/`channels` None.
    """
    view = memoryview(data)
    try:
        if view[:8] == _PNG_SIGNATURE:
            return _png(view)
        if bytes(view[:4]) in _TIFF_MAGIC:
            return _tiff(view)
        if view[:2] == b"\xff\xd8":
            from regrasp.grasp.imaging import image_size

            width, height = image_size(bytes(view[:65536]))
            return ImageHeader("jpeg", width, height, None, None)
    except struct.error as exc:
        raise InvalidInput("truncated or corrupt image header") from exc
    if len(view) == 0:
        raise InvalidInput("empty file")
    raise InvalidInput("not a PNG, JPEG or TIFF image")


def check_image(
    kind: ImageKind, data: bytes | memoryview, *, max_side: int
) -> tuple[int, int] | None:
    """(width, height) if the structure proves `data` a valid `kind` image; None if only a
    decode can tell (`decode_size`); InvalidInput, worded as the decoder words it, if not.

    The rules are those of `regrasp.grasp.imaging.decode_rgb` / `decode_depth` / `decode_mask`:
    RGB 8-bit with 3 or 4 channels, depth one floating-point channel, mask one 8-bit one.
    """
    what = {"rgb": "RGB image", "depth": "depth image", "mask": "mask"}[kind]
    header = read_header(data)
    if header.width <= 0 or header.height <= 0:
        raise InvalidInput(f"{what}: header gives an empty size {header.width}×{header.height}")
    if max(header.width, header.height) > max_side:
        raise InvalidInput(
            f"{what}: {header.width}×{header.height} exceeds the largest side {max_side}"
        )
    if header.dtype is None or header.channels is None:
        return None
    dtype, channels = header.dtype, header.channels
    if kind == "rgb":
        if dtype != "uint8":
            raise InvalidInput(f"RGB image must be 8-bit, got {dtype}")
        if channels not in (3, 4):
            raise InvalidInput(f"RGB image must have 3 channels, got {channels}")
    elif kind == "depth":
        if channels != 1:
            raise InvalidInput(f"depth image must have 1 channel, got {channels}")
        if dtype not in ("float32", "float64"):
            raise InvalidInput(
                f"depth image must be floating-point metres (float32 TIFF), got {dtype}"
            )
    else:
        if dtype != "uint8":
            raise InvalidInput(f"mask must be 8-bit, got {dtype}")
        if channels != 1:
            raise InvalidInput(f"mask must have 1 channel, got {channels}")
    return header.width, header.height


def decode_size(kind: ImageKind, data: bytes, max_side: int) -> tuple[int, int]:
    """(width, height) after a full decode by `regrasp.grasp.imaging`; InvalidInput if it fails.

    A plain module-level function of picklable arguments, so a process pool can run it.
    """
    from regrasp.grasp import imaging

    decode = {"rgb": imaging.decode_rgb, "depth": imaging.decode_depth, "mask": imaging.decode_mask}
    image = decode[kind](data, max_side=max_side)
    return int(image.shape[1]), int(image.shape[0])


# --- private: PNG ------------------------------------------------------------------------


def _png(view: memoryview) -> ImageHeader:
    """Walk every chunk to IEND, checking lengths and CRCs; the header as OpenCV decodes it."""
    end, pos = len(view), 8
    ihdr: tuple[int, ...] | None = None
    has_idat = has_trns = False
    while True:
        if pos + 12 > end:
            raise InvalidInput(
                f"corrupt or truncated PNG: ends at byte {end} before its IEND chunk"
            )
        (length,) = struct.unpack_from(">I", view, pos)
        ctype = bytes(view[pos + 4 : pos + 8])
        name = ctype.decode("latin-1")
        stop = pos + 12 + length
        if length > 2**31 - 1 or stop > end:
            raise InvalidInput(
                f"corrupt or truncated PNG: chunk {name!r} at byte {pos} runs past the end of "
                f"the file ({end} bytes)"
            )
        (crc,) = struct.unpack_from(">I", view, stop - 4)
        if zlib.crc32(view[pos + 4 : stop - 4]) != crc:
            raise InvalidInput(f"corrupt PNG: chunk {name!r} at byte {pos} fails its CRC")
        if ihdr is None:
            if ctype != b"IHDR" or length != 13:
                raise InvalidInput("corrupt PNG: the first chunk is not a 13-byte IHDR")
            ihdr = struct.unpack_from(">IIBBBBB", view, pos + 8)
        elif ctype == b"IDAT":
            has_idat = True
        elif ctype == b"tRNS":
            has_trns = True
        elif ctype == b"IEND":
            break
        pos = stop
    width, height, depth, colour, compression, filtering, interlace = ihdr
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        raise InvalidInput(f"corrupt PNG: bit depth {depth} with colour type {colour}")
    if not has_idat:
        raise InvalidInput("corrupt PNG: no image data (IDAT) chunk")
    # What cv2.IMREAD_UNCHANGED returns; palette, low-bit and grey+alpha are left to a decode.
    dtype = "uint16" if depth == 16 else "uint8" if depth == 8 else None
    channels = {0: 1, 2: 4 if has_trns else 3, 6: 4}.get(colour)
    if dtype is None or channels is None:
        return ImageHeader("png", width, height, None, None)
    return ImageHeader("png", width, height, dtype, channels)


# --- private: TIFF -----------------------------------------------------------------------


def _tiff(view: memoryview) -> ImageHeader:
    """Read the first IFD; every strip or tile must lie inside the file."""
    order = "<" if view[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", view, 2)[0] == 43
    if big:
        (offset,) = struct.unpack_from(order + "Q", view, 8)
        (count,) = struct.unpack_from(order + "Q", view, offset)
        first, size, head = offset + 8, 20, order + "HHQ"
    else:
        (offset,) = struct.unpack_from(order + "I", view, 4)
        (count,) = struct.unpack_from(order + "H", view, offset)
        first, size, head = offset + 2, 12, order + "HHI"
    inline = 8 if big else 4
    tags: dict[int, tuple[int, ...]] = {}
    for n in range(min(count, 4096)):
        at = first + n * size
        tag, kind, values = struct.unpack_from(head, view, at)
        fmt = _TIFF_TYPES.get(kind)
        if fmt is None:
            continue  # RATIONAL, ASCII, …: none of the fields read here
        width = struct.calcsize(fmt) * values
        where = at + size - inline
        if width > inline:
            (where,) = struct.unpack_from(order + ("Q" if big else "I"), view, where)
        tags[tag] = struct.unpack_from(f"{order}{values}{fmt}", view, where)

    def one(tag: int, default: int | None = None) -> int:
        got = tags.get(tag)
        if got:
            return int(got[0])
        if default is None:
            raise InvalidInput(f"truncated or corrupt TIFF: no tag {tag}")
        return default

    width, height = one(256), one(257)
    samples = one(277, 1)
    bits = set(tags.get(258, (1,)))
    sample_format = set(tags.get(339, (1,)))
    compression = one(259, 1)
    if 324 in tags:
        offsets, counts = tags[324], tags.get(325, ())
    else:
        offsets, counts = tags.get(273, ()), tags.get(279, ())
    if not offsets or len(offsets) != len(counts):
        raise InvalidInput("corrupt TIFF: strip or tile offsets and byte counts disagree")
    end = len(view)
    # A depth TIFF has a strip per row: checked as arrays, not one by one.
    stops = np.asarray(offsets, dtype=np.uint64) + np.asarray(counts, dtype=np.uint64)
    past = np.flatnonzero(stops > end)
    if len(past):
        n = int(past[0])
        raise InvalidInput(
            f"corrupt or truncated TIFF: strip {n} (bytes {offsets[n]}..{int(stops[n])}) "
            f"runs past the end of the file ({end} bytes)"
        )
    if compression not in _TIFF_COMPRESSIONS or len(bits) != 1 or len(sample_format) != 1:
        return ImageHeader("tiff", width, height, None, None)
    (b,), (f,) = bits, sample_format
    dtype = {
        (3, 32): "float32",
        (3, 64): "float64",
        (1, 8): "uint8",
        (1, 16): "uint16",
        (2, 8): "int8",
        (2, 16): "int16",
        (2, 32): "int32",
    }.get((f, b))
    if dtype is None:
        return ImageHeader("tiff", width, height, None, None)
    return ImageHeader("tiff", width, height, dtype, samples)
