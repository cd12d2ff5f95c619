"""Grasp prediction: image bytes in, ranked grasps in the image's own pixels out.

The inference service is a thin shell over this module; the benchmark and the trainer's
spot checks call it in-process. One prediction is three steps, kept apart so the service
can batch the middle one across requests:

1. `prepare`: decode the uploaded depth (float TIFF, metres) and/or RGB (PNG/JPEG) and
   build the (C, S, S) network input with `regrasp.grasp.imaging.network_input`, remembering the
   image's `Letterbox` (the trainer uses the same two functions, so they cannot drift);
2. `Predictor.run`: one forward pass over a (B, C, S, S) batch, then each image's four
   maps decoded (`regrasp.grasp.maps.decode`) into up to `MAX_K` grasps in network pixels;
3. `to_image`: grasps mapped back to image pixels by the letterbox, those centred in the
   padding dropped, then the caller's `min_quality` and `k` applied.

Decoding takes peaks best first and suppresses only around grasps it keeps, so the first
k of a `MAX_K` decode are exactly a decode with k, and dropping scores below
`min_quality` afterwards equals decoding with that threshold: one decode per image serves
every request option.

The network is a parameter (`Forward`: (B, C, S, S) float32 → (B, 4, S, S) float32), so
this module needs no torch; the service wraps a registered torch model into one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from regrasp.grasp.imaging import (
    CHANNELS,
    MAX_SIDE,
    Channels,
    Letterbox,
    decode_depth,
    decode_rgb,
    network_input,
)
from regrasp.grasp.maps import INPUT_SIZE, WIDTH_SCALE, decode, decode_scale
from regrasp.grasp.rectangles import X, Y
from regrasp.platform.errors import InvalidInput

#: Most grasps one image can return; requests ask for k <= MAX_K.
MAX_K = 100
#: Grasps returned when a request does not say.
DEFAULT_K = 5
#: Peak threshold of the quality map when a model's metadata does not give one.
DEFAULT_THRESHOLD = 0.1
#: Network input channels of each channel choice (depth first for "rgbd").
IN_CHANNELS: dict[str, int] = {"depth": 1, "rgb": 3, "rgbd": 4}
#: A depth frame whose median valid value exceeds this is taken for millimetres (no scene
#: a gripper reaches is 20 m away) and refused, rather than served nonsense grasps.
MAX_MEDIAN_DEPTH_M = 20.0
#: Column names of a grasp row, in order (DESIGN's Jacquard convention).
GRASP_COLUMNS: tuple[str, ...] = ("x", "y", "theta", "opening", "jaw")

#: A network as this module sees it: (B, C, S, S) float32 inputs → (B, 4, S, S) float32
#: maps (quality, cos 2θ, sin 2θ, opening / width_scale), on the caller's device.
Forward = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What prediction needs to know about a model besides its weights.

    Read from a registered model's metadata (`regrasp.learn.training.registry`): the input it
    was trained on (`channels`, `input_size`), how its width map is scaled and how its
    maps are decoded. `name` is its store name, None only for a network that was never
    registered; `model_id` its `models` row id, None for a model registered without a row.
    """

    name: str | None
    model_id: int | None = None
    architecture: str
    channels: Channels
    input_size: int = INPUT_SIZE
    width_scale: float = WIDTH_SCALE
    threshold: float = DEFAULT_THRESHOLD
    sigma: float | None = None
    """Quality smoothing, network px; None: scaled to `input_size` (`decode_scale`)."""
    min_distance: int | None = None
    """Peak separation, network px; None: scaled to `input_size` (`decode_scale`)."""
    jaw_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.channels not in CHANNELS:
            raise InvalidInput(f"channels must be one of {', '.join(CHANNELS)}")
        if not isinstance(self.input_size, int) or self.input_size < 16:
            raise InvalidInput(f"input_size must be an integer >= 16, got {self.input_size!r}")
        if not self.width_scale > 0 or not self.jaw_ratio > 0:
            raise InvalidInput("width_scale and jaw_ratio must be positive")
        sigma, min_distance = decode_scale(self.input_size)
        if self.sigma is None:
            object.__setattr__(self, "sigma", sigma)
        if self.min_distance is None:
            object.__setattr__(self, "min_distance", min_distance)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ModelSpec:
        """The spec of a registered model from its `metadata.json` content."""
        missing = [f for f in ("architecture", "channels") if f not in metadata]
        if missing:
            raise InvalidInput(f"model metadata lacks {', '.join(missing)}")
        options = dict(metadata.get("decode") or {})
        return cls(
            name=metadata.get("name"),
            model_id=_optional(metadata.get("model_id"), int),
            architecture=str(metadata["architecture"]),
            channels=metadata["channels"],
            input_size=int(metadata.get("input_size", INPUT_SIZE)),
            width_scale=float(metadata.get("width_scale", WIDTH_SCALE)),
            threshold=float(options.get("threshold", DEFAULT_THRESHOLD)),
            sigma=_optional(options.get("sigma"), float),
            min_distance=_optional(options.get("min_distance"), int),
            jaw_ratio=float(options.get("jaw_ratio", 0.5)),
        )

    @property
    def in_channels(self) -> int:
        """Network input channels: 1 (depth), 3 (rgb) or 4 (rgbd)."""
        return IN_CHANNELS[self.channels]

    @property
    def needs_depth(self) -> bool:
        return self.channels in ("depth", "rgbd")

    @property
    def needs_rgb(self) -> bool:
        return self.channels in ("rgb", "rgbd")


@dataclass(frozen=True)
class Prepared:
    """One image ready for the network.

    `inputs` is the (C, S, S) float32 network input, `letterbox` maps network pixels back
    to the image's, `decode_ms` is the wall time of decoding and preprocessing.
    """

    inputs: np.ndarray
    letterbox: Letterbox
    decode_ms: float


@dataclass(frozen=True)
class Ranked:
    """Grasps of one image, best first: (K, 5) float64 rows `(x, y, theta, opening, jaw)`
    in the image's pixels and degrees, and their (K,) quality scores."""

    grasps: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class RawPrediction:
    """Up to `MAX_K` grasps of one image in *network* pixels and their scores."""

    grasps: np.ndarray
    scores: np.ndarray


def prepare(
    *,
    spec: ModelSpec,
    depth: bytes | None = None,
    rgb: bytes | None = None,
    max_side: int = MAX_SIDE,
) -> Prepared:
    """Decode uploaded image bytes and build the network input `spec` asks for.

    `depth` is a floating-point TIFF in metres, `rgb` a PNG or JPEG. The model's channels
    decide which are needed; one the model does not read is ignored (not decoded). Raises
    `InvalidInput` naming the problem: a missing image, bytes that are not a valid image
    of the expected kind, a side beyond `max_side`, depth and RGB of different sizes.
    """
    start = time.perf_counter()
    if depth is None and rgb is None:
        raise InvalidInput("send a depth image (float TIFF, metres) and/or an RGB image")
    if spec.needs_depth and depth is None:
        raise InvalidInput(f"model {spec.name} reads {spec.channels}: send a depth image")
    if spec.needs_rgb and rgb is None:
        raise InvalidInput(f"model {spec.name} reads {spec.channels}: send an RGB image")
    depth_px = decode_depth(depth, max_side=max_side) if spec.needs_depth else None
    if depth_px is not None:
        check_metres(depth_px)
    rgb_px = decode_rgb(rgb, max_side=max_side) if spec.needs_rgb else None
    inputs, letterbox = prepare_arrays(spec=spec, depth=depth_px, rgb=rgb_px)
    return Prepared(inputs, letterbox, (time.perf_counter() - start) * 1000.0)


def prepare_arrays(
    *, spec: ModelSpec, depth: np.ndarray | None = None, rgb: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """((C, S, S) float32 network input, its Letterbox) from decoded pixels.

    `depth` is (H, W) float metres, `rgb` (H, W, 3) uint8; see `imaging.network_input`.
    """
    inputs = network_input(depth, rgb, size=spec.input_size, channels=spec.channels)
    source = depth if spec.needs_depth else rgb
    return inputs, Letterbox.for_image(source, size=spec.input_size)


def check_metres(depth: np.ndarray) -> None:
    """InvalidInput when (H, W) `depth` looks like millimetres, not metres.

    Invalid pixels (NaN, 0, Jacquard's −1) are ignored; a frame with none valid passes
    (the network input fills it).
    """
    valid = depth[np.isfinite(depth) & (depth > 0)]
    if valid.size and (median := float(np.median(valid))) > MAX_MEDIAN_DEPTH_M:
        raise InvalidInput(
            f"depth looks like millimetres (median {median:.1f}); send float32 metres "
            "(divide by 1000)"
        )


def check_options(k: int, min_quality: float | None) -> tuple[int, float | None]:
    """Validate a request's `k` (1..MAX_K) and `min_quality` (finite, or None for any)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    if min_quality is not None and (
        isinstance(min_quality, bool)
        or not isinstance(min_quality, int | float)
        or not math.isfinite(min_quality)
    ):
        raise InvalidInput(f"min_quality must be a finite number, got {min_quality!r}")
    return int(k), None if min_quality is None else float(min_quality)


def to_image(
    raw: RawPrediction,
    *,
    letterbox: Letterbox,
    k: int = DEFAULT_K,
    min_quality: float | None = None,
) -> Ranked:
    """The top `k` grasps of `raw` in image pixels, with scores >= `min_quality`.

    Grasps centred in the letterbox padding (outside the image) are dropped: the network
    saw no pixels there. Centres within half a pixel of the border are clipped onto the
    pixel grid ([0, width − 1] × [0, height − 1]), so every grasp returned is in the frame.
    The order (best first) is kept.
    """
    k, min_quality = check_options(k, min_quality)
    grasps = letterbox.to_image(raw.grasps) if len(raw.grasps) else np.zeros((0, 5))
    scores = np.asarray(raw.scores, dtype=np.float64)
    keep = (
        (grasps[:, X] >= -0.5)
        & (grasps[:, X] <= letterbox.width - 0.5)
        & (grasps[:, Y] >= -0.5)
        & (grasps[:, Y] <= letterbox.height - 0.5)
    )
    if min_quality is not None:
        keep &= scores >= min_quality
    grasps, scores = grasps[keep][:k], scores[keep][:k]
    grasps[:, X] = np.clip(grasps[:, X], 0.0, letterbox.width - 1.0)
    grasps[:, Y] = np.clip(grasps[:, Y], 0.0, letterbox.height - 1.0)
    return Ranked(grasps.astype(np.float64, copy=False), scores)


class Predictor:
    """A network and its spec: batched forward passes decoded into grasps.

    Holds no mutable state, so one Predictor can serve concurrent callers as far as its
    `forward` can (a torch module in eval mode under inference mode can).
    """

    def __init__(self, spec: ModelSpec, forward: Forward) -> None:
        if not callable(forward):
            raise InvalidInput("forward must be callable")
        self.spec = spec
        self.forward = forward

    def run(self, inputs: np.ndarray) -> tuple[list[RawPrediction], float, float]:
        """Forward (B, C, S, S) inputs and decode each image: (predictions, forward ms,
        decode ms). Each prediction holds up to `MAX_K` grasps in network pixels."""
        x = self._check_inputs(inputs)
        start = time.perf_counter()
        maps = np.asarray(self.forward(x))
        forward_ms = (time.perf_counter() - start) * 1000.0
        expected = (len(x), 4, *x.shape[2:])
        if maps.shape != expected:
            raise ValueError(f"network returned maps of shape {maps.shape}, expected {expected}")
        start = time.perf_counter()
        out = [self._decode(m) for m in maps]
        return out, forward_ms, (time.perf_counter() - start) * 1000.0

    def predict(
        self, prepared: Sequence[Prepared], *, k: int = DEFAULT_K, min_quality: float | None = None
    ) -> list[Ranked]:
        """Ranked grasps in image pixels for each prepared image, one forward pass for all."""
        if not prepared:
            return []
        raw, _, _ = self.run(np.stack([p.inputs for p in prepared]))
        return [
            to_image(r, letterbox=p.letterbox, k=k, min_quality=min_quality)
            for r, p in zip(raw, prepared, strict=True)
        ]

    def _check_inputs(self, inputs: np.ndarray) -> np.ndarray:
        x = np.asarray(inputs, dtype=np.float32)
        s, c = self.spec.input_size, self.spec.in_channels
        if x.ndim != 4 or x.shape[1:] != (c, s, s) or len(x) == 0:
            raise InvalidInput(f"expected inputs of shape (B, {c}, {s}, {s}), got {x.shape}")
        return x

    def _decode(self, maps: np.ndarray) -> RawPrediction:
        spec = self.spec
        grasps, scores = decode(
            *maps,
            k=MAX_K,
            threshold=spec.threshold,
            sigma=spec.sigma,
            min_distance=spec.min_distance,
            jaw_ratio=spec.jaw_ratio,
            width_scale=spec.width_scale,
        )
        return RawPrediction(grasps, scores)


def _optional(value: Any, kind: Callable[[Any], Any]) -> Any:
    """`kind(value)`, or None when the metadata left the option to its default."""
    return None if value is None else kind(value)
