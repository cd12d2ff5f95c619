"""Image decoding, validation and the network input, shared by importer, trainer and inference.

Everything that turns bytes into pixels, and pixels into the (C, S, S) float32 array a
GG-CNN-family network reads, lives here, so the trainer and the inference service cannot
drift apart: both call `network_input`, and both map grasps with `Letterbox`.

- Decoding (`decode_rgb`, `decode_depth`, `decode_mask`) goes through OpenCV and refuses
  with `InvalidInput` anything that is not the expected image: empty or corrupt bytes,
  truncated files, the wrong dtype or channel count, or a side beyond `max_side` (checked
  from the header, before any pixel is allocated).
- `Letterbox` maps an image of any size onto the square network input by one uniform scale
  plus centred padding, so angles are preserved; a square image (Jacquard's 1024²) is a
  plain resize, as DESIGN says.
- Depth is normalised as DESIGN says, `clip(d − mean(d), −1, 1)` over valid pixels.

RGB arrays are (H, W, 3) uint8 in R, G, B order; depth arrays are (H, W) float32 metres.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from regrasp.grasp.maps import INPUT_SIZE
from regrasp.grasp.rectangles import JAW, OPENING, X, Y, as_grasps
from regrasp.platform.errors import InvalidInput

#: Largest accepted image side in pixels unless a caller passes another `max_side`.
MAX_SIDE = 8192
#: Neighbourhood radius (network px) cv2.inpaint uses to fill invalid depth.
INPAINT_RADIUS = 3

Channels = Literal["depth", "rgb", "rgbd"]
CHANNELS: tuple[str, ...] = ("depth", "rgb", "rgbd")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: C0–CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def decode_rgb(data: bytes, *, max_side: int = MAX_SIDE) -> np.ndarray:
    """PNG or JPEG bytes to (H, W, 3) uint8 RGB.

    An alpha channel is dropped; grayscale, two-channel or 16-bit images are refused, as
    are files whose side exceeds `max_side`. EXIF orientation is ignored: pixels are taken
    as stored, which is the frame grasp labels refer to.
    """
    image = _decode(data, max_side=max_side, what="RGB image")
    if image.dtype != np.uint8:
        raise InvalidInput(f"RGB image must be 8-bit, got {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if channels != 3:
        raise InvalidInput(f"RGB image must have 3 channels, got {channels}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_depth(data: bytes, *, max_side: int = MAX_SIDE) -> np.ndarray:
    """Floating-point TIFF bytes (metres; Jacquard's LZW float32) to (H, W) float32 metres.

    Invalid pixels are kept as stored (NaN, 0, or −1 in stereo depth); `normalize_depth`
    and `network_input` fill them. Integer depth (e.g. 16-bit millimetres) is refused
    rather than guessed: convert it to metres first.
    """
    image = _decode(data, max_side=max_side, what="depth image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2:
        raise InvalidInput(f"depth image must have 1 channel, got {image.shape[2]}")
    if image.dtype not in (np.float32, np.float64):
        raise InvalidInput(
            f"depth image must be floating-point metres (float32 TIFF), got {image.dtype}"
        )
    return image.astype(np.float32, copy=False)


def decode_mask(data: bytes, *, max_side: int = MAX_SIDE) -> np.ndarray:
    """Single-channel 8-bit PNG bytes (Jacquard's 0/255 object mask) to (H, W) bool."""
    image = _decode(data, max_side=max_side, what="mask")
    if image.dtype != np.uint8:
        raise InvalidInput(f"mask must be 8-bit, got {image.dtype}")
    if image.ndim != 2:
        raise InvalidInput(f"mask must have 1 channel, got {image.shape[2]}")
    return image > 0


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) read from a PNG, JPEG or TIFF header, without decoding pixels.

    Lets callers refuse absurd sizes (decompression bombs) before OpenCV allocates them.
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    try:
        if data.startswith(_PNG_SIGNATURE):
            if len(data) < 24 or data[12:16] != b"IHDR":
                raise InvalidInput("truncated or corrupt PNG header")
            width, height = struct.unpack(">II", data[16:24])
        elif data.startswith(b"\xff\xd8"):
            width, height = _jpeg_size(data)
        elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            width, height = _tiff_size(data)
        else:
            raise InvalidInput("not a PNG, JPEG or TIFF image")
    except struct.error as exc:
        raise InvalidInput("truncated or corrupt image header") from exc
    return int(width), int(height)


@dataclass(frozen=True)
class Letterbox:
    """How an image of `width` × `height` pixels maps onto the square network input of `size`.

    One uniform scale `size / max(width, height)` and centred zero padding on the short
    side, so rectangles stay rectangles and angles are unchanged (a plain resize of a
    640×480 image to 300² would shear them). For a square image this is a plain resize.

    Coordinates follow OpenCV: pixel (i, j) has its centre at x = j, y = i. The mapping is
    exactly the one `cv2.resize(fx=fy=scale)` applies, x' = (x + ½)·scale − ½ + pad_x, so
    painted maps line up with the resized pixels to well under a pixel.
    """

    width: int
    height: int
    size: int = INPUT_SIZE

    def __post_init__(self) -> None:
        for name in ("width", "height", "size"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value <= 0:
                raise InvalidInput(f"Letterbox {name} must be a positive integer, got {value!r}")

    @classmethod
    def for_image(cls, image: np.ndarray, *, size: int = INPUT_SIZE) -> Letterbox:
        """The letterbox of an (H, W) or (H, W, C) image."""
        height, width = np.shape(image)[:2]
        return cls(int(width), int(height), size)

    @property
    def scale(self) -> float:
        """Network pixels per image pixel."""
        return self.size / max(self.width, self.height)

    @property
    def resized(self) -> tuple[int, int]:
        """(width, height) of the scaled image before padding (OpenCV's rounding)."""
        return _round(self.width * self.scale), _round(self.height * self.scale)

    @property
    def offset(self) -> tuple[int, int]:
        """(left, top) padding in network pixels."""
        w, h = self.resized
        return (self.size - w) // 2, (self.size - h) // 2

    def to_network(self, grasps: np.ndarray) -> np.ndarray:
        """(N, 5) grasps in image px → network px: centre, opening and jaw scaled, θ kept."""
        g = as_grasps(grasps).copy()
        s, (left, top) = self.scale, self.offset
        g[:, X] = (g[:, X] + 0.5) * s - 0.5 + left
        g[:, Y] = (g[:, Y] + 0.5) * s - 0.5 + top
        g[:, [OPENING, JAW]] *= s
        return g

    def to_image(self, grasps: np.ndarray) -> np.ndarray:
        """(N, 5) grasps in network px → image px; the inverse of `to_network`."""
        g = as_grasps(grasps).copy()
        s, (left, top) = self.scale, self.offset
        g[:, X] = (g[:, X] - left + 0.5) / s - 0.5
        g[:, Y] = (g[:, Y] - top + 0.5) / s - 0.5
        g[:, [OPENING, JAW]] /= s
        return g

    def resize(self, image: np.ndarray, *, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """Scale an (H, W[, C]) image by `scale` without padding: (h', w'[, C]) = `resized`."""
        self._check_shape(image)
        s = self.scale
        out = cv2.resize(image, None, fx=s, fy=s, interpolation=interpolation)
        if out.ndim < image.ndim:  # OpenCV drops a trailing channel axis of 1
            out = out[..., None]
        return out

    def pad(self, image: np.ndarray, *, value: float = 0.0) -> np.ndarray:
        """Place a `resized` image in the (S, S[, C]) square, filling the border with `value`."""
        w, h = self.resized
        if image.shape[:2] != (h, w):
            raise InvalidInput(f"expected a resized image of {w}×{h}, got shape {image.shape}")
        out = np.full((self.size, self.size, *image.shape[2:]), value, dtype=image.dtype)
        left, top = self.offset
        out[top : top + h, left : left + w] = image
        return out

    def apply(
        self, image: np.ndarray, *, interpolation: int = cv2.INTER_AREA, value: float = 0.0
    ) -> np.ndarray:
        """Resize then pad: the (S, S[, C]) network view of an (H, W[, C]) image."""
        return self.pad(self.resize(image, interpolation=interpolation), value=value)

    def _check_shape(self, image: np.ndarray) -> None:
        if np.ndim(image) not in (2, 3) or np.shape(image)[:2] != (self.height, self.width):
            raise InvalidInput(
                f"image of shape {np.shape(image)} does not match the letterbox "
                f"{self.width}×{self.height}"
            )


def depth_valid(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: finite and > 0. Stereo depth marks invalid pixels −1, others NaN or 0."""
    depth = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def normalize_depth(depth: np.ndarray, *, inpaint_radius: int = INPAINT_RADIUS) -> np.ndarray:
    """(H, W) metres → (H, W) float32 `clip(d − mean(d), −1, 1)`, mean over valid pixels.

    Invalid pixels (see `depth_valid`) are first filled by `cv2.inpaint` (Navier–Stokes,
    as GG-CNN; OpenCV's Telea garbles float32) from their valid neighbours, so holes look
    like nearby surface rather than a step the network could mistake for an edge.
    `network_input` calls this on the downscaled image, where inpainting costs little.
    Depth with no valid pixel is refused.
    """
    depth = _check_depth(depth)
    valid = depth_valid(depth)
    if not valid.any():
        raise InvalidInput("depth image has no valid pixel (all NaN, <= 0 or -1)")
    mean = float(depth[valid].mean(dtype=np.float64))
    filled = depth.copy()
    if not valid.all():
        filled[~valid] = mean
        holes = (~valid).astype(np.uint8)
        filled = cv2.inpaint(filled, holes, inpaint_radius, cv2.INPAINT_NS)
    return np.clip(filled - np.float32(mean), -1.0, 1.0).astype(np.float32, copy=False)


def normalize_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → (H, W, 3) float32 in [0, 1] minus the image's mean (GG-CNN's)."""
    rgb = _check_rgb(rgb)
    out = rgb.astype(np.float32) / np.float32(255.0)
    return out - out.mean(dtype=np.float64).astype(np.float32)


def network_input(
    depth: np.ndarray | None = None,
    rgb: np.ndarray | None = None,
    *,
    size: int = INPUT_SIZE,
    channels: Channels = "depth",
) -> np.ndarray:
    """The (C, S, S) float32 array a network reads: C = 1 (depth), 3 (rgb) or 4 (rgbd).

    `depth` is (H, W) metres, `rgb` (H, W, 3) uint8; both are letterboxed by
    `Letterbox(W, H, size)` (use it to map predicted grasps back to image pixels). Depth
    is downscaled with invalid pixels excluded (a valid-weighted area average), then
    normalised by `normalize_depth`; RGB by `normalize_rgb`. Padding is 0, the mean, in
    every channel. For "rgbd" the order is depth then R, G, B, as GG-CNN stacks them.
    """
    if channels not in CHANNELS:
        raise InvalidInput(f"channels must be one of {', '.join(CHANNELS)}; got {channels!r}")
    need_depth, need_rgb = channels in ("depth", "rgbd"), channels in ("rgb", "rgbd")
    if need_depth and depth is None:
        raise InvalidInput(f"channels={channels!r} needs a depth image")
    if need_rgb and rgb is None:
        raise InvalidInput(f"channels={channels!r} needs an RGB image")
    if need_depth and need_rgb and np.shape(depth)[:2] != np.shape(rgb)[:2]:
        raise InvalidInput(
            f"depth {np.shape(depth)[:2]} and RGB {np.shape(rgb)[:2]} differ in size"
        )
    planes: list[np.ndarray] = []
    if need_depth:
        d = _check_depth(depth)
        box = Letterbox.for_image(d, size=size)
        valid = depth_valid(d)
        # Average only valid pixels into each output pixel: invalid values (−1, NaN) must not
        # bleed into their neighbours; output pixels with no valid source stay invalid.
        weight = box.resize(valid.astype(np.float32))
        total = box.resize(np.where(valid, d, np.float32(0.0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            small = np.where(weight > 1e-6, total / weight, np.float32(np.nan))
        planes.append(box.pad(normalize_depth(small.astype(np.float32)))[None])
    if need_rgb:
        image = _check_rgb(rgb)
        box = Letterbox.for_image(image, size=size)
        planes.append(np.moveaxis(box.pad(normalize_rgb(box.resize(image))), 2, 0))
    return np.ascontiguousarray(np.concatenate(planes, axis=0), dtype=np.float32)


def _decode(data: bytes, *, max_side: int, what: str) -> np.ndarray:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidInput(f"{what}: empty data")
    width, height = image_size(data)
    if width <= 0 or height <= 0:
        raise InvalidInput(f"{what}: header gives an empty size {width}×{height}")
    if max(width, height) > max_side:
        raise InvalidInput(f"{what}: {width}×{height} exceeds the largest side {max_side}")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise InvalidInput(f"{what}: corrupt or truncated data")
    if image.shape[:2] != (height, width):
        raise InvalidInput(f"{what}: decoded {image.shape[:2]} disagrees with its header")
    return image


def _check_depth(depth: object) -> np.ndarray:
    d = np.asarray(depth)
    if d.ndim != 2 or d.size == 0:
        raise InvalidInput(f"depth must be a non-empty (H, W) array, got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.floating):
        raise InvalidInput(f"depth must be floating-point metres, got {d.dtype}")
    return d.astype(np.float32, copy=False)


def _check_rgb(rgb: object) -> np.ndarray:
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise InvalidInput(f"RGB must be a non-empty (H, W, 3) array, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InvalidInput(f"RGB must be uint8, got {image.dtype}")
    return image


def _round(value: float) -> int:
    # OpenCV's saturate_cast<int>: round half to even, never below one pixel.
    return max(1, int(round(value)))


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            break
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    raise InvalidInput("truncated or corrupt JPEG: no frame header")


def _tiff_size(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    if big:
        (offset,) = struct.unpack(order + "Q", data[8:16])
        (count,) = struct.unpack(order + "Q", data[offset : offset + 8])
        first, entry_size, count_fmt, value_at = offset + 8, 20, "Q", 12
    else:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        first, entry_size, count_fmt, value_at = offset + 2, 12, "I", 8
    # Value formats by TIFF field type: SHORT, LONG, LONG8.
    formats = {3: "H", 4: "I", 16: "Q"}
    found: dict[int, int] = {}
    for n in range(min(count, 4096)):
        entry = data[first + n * entry_size : first + (n + 1) * entry_size]
        tag, kind, _ = struct.unpack(order + "HH" + count_fmt, entry[:value_at])
        if tag in (256, 257) and kind in formats:
            fmt = order + formats[kind]
            (found[tag],) = struct.unpack(fmt, entry[value_at : value_at + struct.calcsize(fmt)])
        if len(found) == 2:
            return found[256], found[257]
    raise InvalidInput("truncated or corrupt TIFF: no image width and length")
