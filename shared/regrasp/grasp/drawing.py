"""Pictures of grasps and rounds: the only module of the library that draws.

Everything here is a pure function from arrays (or plain numbers) to an image: an (H, W, 3)
uint8 RGB array, or PNG bytes through `to_png`. Nothing reads files, settings or the
network, so the review UI, the CLI and the tests share one renderer.

Review overlays follow the paper's Figure 1 and one legend everywhere: ground-truth
rectangles in green, the model's predictions in red and numbered 1..k (the numbers are the
keys a reviewer presses), rectangles a reviewer marks wrong in orange, crossed out and
numbered; accepted predictions get a filled number tag. Each rectangle is drawn with its two
jaws (the edges across the opening) thicker than the opening edges, so the grasp direction
reads at a glance; labels are drawn thinner than predictions, so an image with 100+ labels
stays readable. Depth is shown in grey so the coloured rectangles keep their contrast.
`review_frame` and `label_handles` say where each label lands on the drawn picture, so a
UI can make the rectangles clickable.

Charts (the paper's Figures 4–7: flagged images, decision mix, accuracy and loss per round)
are drawn with matplotlib's object API on an Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y, as_grasps, corners
from regrasp.platform.errors import InvalidInput

__all__ = [
    "ACCEPTED",
    "DRAWN",
    "LABEL",
    "PREDICTION",
    "WRONG",
    "Box",
    "Frame",
    "before_after",
    "chart_decision_mix",
    "chart_flagged",
    "chart_metrics",
    "depth_to_rgb",
    "draw_grasps",
    "label_handles",
    "review_frame",
    "review_overlay",
    "to_png",
    "zoom_box",
]

#: RGB colours of the overlays.
LABEL = (40, 200, 60)  # green: ground truth
PREDICTION = (230, 30, 30)  # red: the model's grasps
WRONG = (255, 150, 0)  # orange: rectangles a reviewer marked wrong
ACCEPTED = (255, 235, 60)  # yellow tag: predictions a reviewer accepts
DRAWN = (40, 200, 255)  # cyan: grasps a reviewer drew (new labels)

#: A crop as (x0, y0, x1, y1) in pixels, half-open: columns x0..x1-1, rows y0..y1-1.
Box = tuple[int, int, int, int]

#: Decision colours in charts; red is kept for the model's predictions (the one legend),
#: so an annotation error is purple (a fix is orange like the labels it removes).
_DECISION_COLOURS = {
    "true_negative": "#4c78a8",
    "missing_label": "#54a24b",
    "annotation_error": "#b279a2",
    "fix": "#f58518",
}


@dataclass(frozen=True)
class Frame:
    """Where image pixels land on a review picture: crop `box` of the image, then `scale`.

    A picture point is `(image_point - (box[0], box[1])) * scale`; `size` is the picture's
    (width, height) in pixels.
    """

    box: Box
    scale: float
    size: tuple[int, int]

    def grasps(self, grasps: np.ndarray) -> np.ndarray:
        """(N, 5) grasps in image pixels to picture pixels (angles unchanged)."""
        return _transform(as_grasps(grasps), offset=self.box[:2], scale=self.scale)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) picture pixels back to image pixels: where a click or stroke landed."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return p / self.scale + np.asarray(self.box[:2], dtype=np.float64)


def review_frame(
    shape: tuple[int, ...],
    *,
    labels: np.ndarray,
    predictions: np.ndarray | None = None,
    zoom: bool = False,
    margin: float = 0.2,
    size: int | None = None,
) -> Frame:
    """The crop and scale `review_overlay` uses for an image of `shape` ((H, W[, 3])).

    zoom: crop to the rectangles (`zoom_box` with `margin`); size: the picture's longer side
    in pixels (None: no resize).
    """
    if size is not None and size < 16:
        raise InvalidInput(f"size must be at least 16 pixels, got {size}")
    h, w = int(shape[0]), int(shape[1])
    box: Box = (0, 0, w, h)
    if zoom:
        preds = as_grasps(predictions) if predictions is not None else np.zeros((0, 5))
        box = zoom_box(np.concatenate([as_grasps(labels), preds]), shape=(h, w), margin=margin)
    x0, y0, x1, y1 = box
    scale = 1.0 if size is None else size / max(x1 - x0, y1 - y0)
    out = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    return Frame(box=box, scale=scale, size=out)


def label_handles(grasps: np.ndarray) -> np.ndarray:
    """(N, 2) one point per rectangle to pick it by: the middle of an opening edge.

    Jacquard repeats each pose with several jaw sizes; those rectangles share a centre but
    not their opening edges (at jaw/2 from the centre, across the opening), so a handle
    there tells them apart where a centre marker would stack them on one point.
    """
    g = as_grasps(grasps)
    t = np.deg2rad(g[:, THETA])
    across = np.stack([-np.sin(t), np.cos(t)], axis=1) * (g[:, JAW, None] / 2)
    return g[:, [X, Y]] + across


def review_overlay(
    image: np.ndarray,
    *,
    labels: np.ndarray,
    predictions: np.ndarray | None = None,
    wrong: Sequence[int] = (),
    accepted: Sequence[int] = (),
    drawn: np.ndarray | None = None,
    number_labels: bool = False,
    zoom: bool = False,
    margin: float = 0.2,
    size: int | None = None,
) -> np.ndarray:
    """The review picture of one image: labels green, numbered predictions red.

    image: (H, W, 3) uint8 RGB or (H, W) depth (float, metres; drawn in grey here).
    labels: (N, 5) ground-truth grasps; predictions: (K, 5) grasps, best first.
    wrong: indices into `labels` marked wrong (orange, crossed and numbered); accepted:
    indices into `predictions` accepted as labels (tagged); drawn: (D, 5) grasps the
    reviewer drew (cyan; they do not move the zoom, so a stroke's picture pixels keep
    meaning the same image pixels while one draws). number_labels writes every
    label's index + 1 beside it (without it only the wrong ones are numbered, so 100+
    labels do not pile into a heap of digits).
    zoom: crop to the rectangles (`zoom_box` with `margin`) before drawing.
    size: output side in pixels (the longer side; aspect kept). Drawing happens after the
    resize, so lines stay one crisp width whatever the zoom. `review_frame` gives the same
    crop and scale.
    Returns (h, w, 3) uint8 RGB.
    """
    rgb = _as_rgb(image)
    labels = as_grasps(labels)
    preds = as_grasps(predictions) if predictions is not None else np.zeros((0, 5))
    wrong_set = _indices(wrong, len(labels), "wrong")
    accepted_set = _indices(accepted, len(preds), "accepted")
    frame = review_frame(
        rgb.shape, labels=labels, predictions=preds, zoom=zoom, margin=margin, size=size
    )
    x0, y0, x1, y1 = frame.box
    crop = rgb[y0:y1, x0:x1]
    if frame.scale != 1.0:
        interp = cv2.INTER_AREA if frame.scale < 1 else cv2.INTER_LINEAR
        crop = cv2.resize(crop, frame.size, interpolation=interp)
    else:
        crop = crop.copy()  # never draw on the caller's array
    canvas = np.ascontiguousarray(crop)
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    thin = max(1, thickness // 2)  # labels: many, so thinner than the few predictions

    keep = np.array([i not in wrong_set for i in range(len(labels))], dtype=bool)
    draw_grasps(canvas, frame.grasps(labels[keep]), colour=LABEL, thickness=thin)
    if wrong_set:
        idx = sorted(wrong_set)
        # Few and the point of a Fix: drawn as thick as predictions' edges, to stand out.
        draw_grasps(
            canvas, frame.grasps(labels[idx]), colour=WRONG, thickness=thickness, cross=True
        )
    if number_labels and len(labels):
        _numbers(canvas, frame.grasps(labels), colour=LABEL, thickness=thickness)
    if wrong_set:
        _numbers(
            canvas,
            frame.grasps(labels),
            colour=WRONG,
            thickness=thickness,
            only=wrong_set,
        )
    if drawn is not None and len(drawn):
        draw_grasps(canvas, frame.grasps(drawn), colour=DRAWN, thickness=thickness + 1)
    draw_grasps(canvas, frame.grasps(preds), colour=PREDICTION, thickness=thickness + 1)
    if len(preds):
        _numbers(
            canvas, frame.grasps(preds), colour=PREDICTION, thickness=thickness, filled=accepted_set
        )
    return canvas


def draw_grasps(
    canvas: np.ndarray,
    grasps: np.ndarray,
    *,
    colour: tuple[int, int, int],
    thickness: int = 1,
    cross: bool = False,
) -> np.ndarray:
    """Draw rectangles onto `canvas` ((H, W, 3) uint8, modified in place and returned).

    The jaws (corner edges 1→2 and 3→0, across the opening) are drawn at twice
    `thickness`, the opening edges at `thickness`, so the closing direction is visible.
    cross: also draw both diagonals (a rectangle marked wrong).
    """
    g = as_grasps(grasps)
    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.dtype != np.uint8:
        raise InvalidInput(f"canvas must be (H, W, 3) uint8, got {canvas.shape} {canvas.dtype}")
    if len(g) == 0:
        return canvas
    quads = np.round(corners(g)).astype(np.int32)  # (N, 4, 2)
    cv2.polylines(canvas, _edges(quads, (0, 1), (2, 3)), False, colour, thickness, cv2.LINE_AA)
    cv2.polylines(canvas, _edges(quads, (1, 2), (3, 0)), False, colour, 2 * thickness, cv2.LINE_AA)
    if cross:
        diagonals = _edges(quads, (0, 2), (1, 3))
        cv2.polylines(canvas, diagonals, False, colour, thickness, cv2.LINE_AA)
    return canvas


def zoom_box(
    grasps: np.ndarray,
    *,
    shape: tuple[int, int],
    margin: float = 0.2,
    min_side: int = 96,
) -> Box:
    """A square crop around the rectangles (the object), inside an image of `shape` (H, W).

    The box is the rectangles' bounding box grown by `margin` of its side on every side,
    made square (so the zoomed picture keeps a constant shape), at least `min_side` pixels
    and clipped to the image. No rectangles: the whole image.
    """
    h, w = int(shape[0]), int(shape[1])
    if h <= 0 or w <= 0:
        raise InvalidInput(f"shape must be positive, got {shape}")
    if margin < 0:
        raise InvalidInput(f"margin must be >= 0, got {margin}")
    g = as_grasps(grasps)
    if len(g) == 0:
        return (0, 0, w, h)
    pts = corners(g).reshape(-1, 2)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    side = max(float((hi - lo).max()) * (1 + 2 * margin), float(min_side))
    side = min(side, float(min(h, w)))
    cx, cy = (lo + hi) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return (x0, y0, x0 + int(side), y0 + int(side))


def depth_to_rgb(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth in metres to (H, W, 3) uint8 grey RGB.

    Grey, not a colour map: the overlays' green, red and orange must keep their contrast on
    it (green labels on viridis greens were unreadable). Valid pixels (finite, > 0; stereo
    depth marks invalid ones with −1) are stretched between their 1st and 99th percentiles
    onto 40..255, near = bright; invalid pixels are black, darker than any valid one.
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise InvalidInput(f"depth must be (H, W), got {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    scaled = np.zeros(d.shape, dtype=np.uint8)
    if valid.any():
        lo, hi = np.percentile(d[valid], [1, 99])
        span = max(float(hi - lo), 1e-6)
        near = 1.0 - np.clip((d - lo) / span, 0.0, 1.0)
        scaled = np.where(valid, np.round(40 + near * 215), 0).astype(np.uint8)
    return np.repeat(scaled[:, :, None], 3, axis=2)


def before_after(
    image: np.ndarray,
    *,
    before: np.ndarray,
    after: np.ndarray,
    size: int = 512,
    zoom: bool = False,
    gap: int = 8,
) -> np.ndarray:
    """The paper's Figure 8: the same image with the labels of two versions side by side.

    before/after: (N, 5) and (M, 5) label sets. Rectangles present only before are drawn
    orange and crossed (removed), those present in both green, those only after green and
    twice as thick (added: they are labels, and red means the model's predictions in every
    picture), so a change reads without comparing the two halves. Returns
    (h, 2·w + gap, 3).
    """
    b, a = as_grasps(before), as_grasps(after)
    removed = _missing_rows(b, a)
    added = _missing_rows(a, b)
    both = np.concatenate([b, a])
    left = review_overlay(
        image, labels=b, wrong=np.flatnonzero(removed).tolist(), zoom=False, size=None
    )
    right = review_overlay(image, labels=a[~added], size=None)
    thick = 2 * max(1, round(max(right.shape[:2]) / 400))
    draw_grasps(right, a[added], colour=LABEL, thickness=thick)
    if zoom:
        x0, y0, x1, y1 = zoom_box(both, shape=left.shape[:2])
        left, right = left[y0:y1, x0:x1], right[y0:y1, x0:x1]
    left, right = _fit(left, size), _fit(right, size)
    spacer = np.full((left.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def to_png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB (or (H, W) uint8 grey) to PNG bytes."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise InvalidInput(f"to_png takes (H, W[, 3]) uint8, got {a.shape} {a.dtype}")
    if a.ndim == 3:
        a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", a)
    if not ok:  # pragma: no cover - OpenCV only fails on impossible shapes
        raise InvalidInput("could not encode PNG")
    return buf.tobytes()


def chart_flagged(
    rounds: Sequence[int],
    *,
    flagged: Sequence[int],
    reviewed: Sequence[int] | None = None,
    title: str = "Flagged images per round",
) -> bytes:
    """Bar chart of flagged images per round (the paper's Figure 4); PNG bytes."""
    _same_length(rounds, flagged=flagged, reviewed=reviewed)
    fig, ax = _figure()
    x = np.arange(len(rounds))
    width = 0.4 if reviewed is not None else 0.7
    ax.bar(x - (width / 2 if reviewed is not None else 0), flagged, width, label="flagged")
    if reviewed is not None:
        ax.bar(x + width / 2, reviewed, width, label="reviewed", color="#9ecae9")
        ax.legend()
    _round_axis(ax, rounds)
    ax.set_ylabel("images")
    ax.set_title(title)
    _counts_axis(ax)
    return _png(fig)


def chart_decision_mix(
    rounds: Sequence[int],
    *,
    mix: Mapping[str, Sequence[int]],
    title: str = "Decisions per round",
) -> bytes:
    """Stacked bars: how many of each decision per round (Figures 5–6); PNG bytes.

    mix maps a decision name (true_negative, missing_label, annotation_error, fix) to one
    count per round.
    """
    _same_length(rounds, **dict(mix))
    fig, ax = _figure()
    x = np.arange(len(rounds))
    bottom = np.zeros(len(rounds))
    for name, counts in mix.items():
        values = np.asarray(counts, dtype=float)
        colour = _DECISION_COLOURS.get(name)
        ax.bar(x, values, 0.7, bottom=bottom, label=name.replace("_", " "), color=colour)
        bottom += values
    _round_axis(ax, rounds)
    ax.set_ylabel("decisions")
    ax.set_title(title)
    if mix:
        ax.legend(fontsize="small")
    _counts_axis(ax)
    return _png(fig)


def chart_metrics(
    rounds: Sequence[int],
    *,
    series: Mapping[str, Sequence[float | None]],
    ylabel: str,
    title: str,
    xlabel: str = "round",
    ticks: Sequence[str] | None = None,
) -> bytes:
    """Lines of one or more metrics per round, e.g. accuracy or loss (Figure 7); PNG bytes.

    A None value (a round without that metric) leaves a gap in its line. The metrics are
    non-negative (accuracy, shares, losses), so the y axis starts at 0. `ticks` label the
    x positions (default: the `rounds` values), `xlabel` names them.
    """
    _same_length(rounds, **dict(series))
    fig, ax = _figure()
    x = np.arange(len(rounds))
    for name, values in series.items():
        y = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
        ax.plot(x, y, marker="o", label=name)
    _round_axis(ax, rounds, xlabel)
    if ticks is not None:
        ax.set_xticks(x, list(ticks))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    _counts_axis(ax)
    return _png(fig)


# --- helpers --------------------------------------------------------------------------------


def _as_rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        if a.dtype == np.uint8:
            return np.repeat(a[:, :, None], 3, axis=2)
        return depth_to_rgb(a)
    if a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
        return a
    raise InvalidInput(f"image must be (H, W, 3) uint8 RGB or (H, W) depth, got {a.shape}")


def _indices(values: Sequence[int], n: int, name: str) -> set[int]:
    out = {int(v) for v in values}
    bad = sorted(i for i in out if not 0 <= i < n)
    if bad:
        raise InvalidInput(f"{name} indices {bad} out of range for {n} rectangles")
    return out


def _transform(g: np.ndarray, *, offset: tuple[int, int], scale: float) -> np.ndarray:
    """Grasps in image pixels to the cropped, resized canvas (angles unchanged)."""
    out = g.copy()
    out[:, X] = (g[:, X] - offset[0]) * scale
    out[:, Y] = (g[:, Y] - offset[1]) * scale
    out[:, [OPENING, JAW]] = g[:, [OPENING, JAW]] * scale
    return out


def _numbers(
    canvas: np.ndarray,
    g: np.ndarray,
    *,
    colour: tuple[int, int, int],
    thickness: int,
    filled: set[int] = frozenset(),  # type: ignore[assignment]
    only: set[int] | None = None,
) -> None:
    """Write index + 1 above each rectangle (of `only`, when given); filled tags for `filled`."""
    quads = corners(g)
    font_scale = 0.45 * thickness + 0.15
    h, w = canvas.shape[:2]
    for i, quad in enumerate(quads):
        if only is not None and i not in only:
            continue
        text = str(i + 1)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        corner = quad[np.argmin(quad[:, 1])]  # the top corner: tags sit above the rectangle
        x = int(np.clip(corner[0] - tw / 2, 0, max(0, w - tw - 2)))
        y = int(np.clip(corner[1] - 4, th + 2, h - base - 1))
        if i in filled:
            cv2.rectangle(canvas, (x - 2, y - th - 2), (x + tw + 2, y + base), ACCEPTED, -1)
            _text(canvas, text, (x, y), font_scale, (0, 0, 0), thickness)
        else:
            _text(canvas, text, (x, y), font_scale, (0, 0, 0), thickness + 2)  # halo
            _text(canvas, text, (x, y), font_scale, colour, thickness)


def _text(
    canvas: np.ndarray,
    text: str,
    at: tuple[int, int],
    scale: float,
    colour: tuple[int, int, int],
    thickness: int,
) -> None:
    cv2.putText(canvas, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _edges(quads: np.ndarray, *pairs: tuple[int, int]) -> list[np.ndarray]:
    """Segments between the given corner pairs of every quad, as OpenCV wants them: one
    C-contiguous (2, 2) int32 array each (fancy indexing alone gives strided views)."""
    segments = np.concatenate([quads[:, list(pair)] for pair in pairs])
    return list(np.ascontiguousarray(segments))


def _missing_rows(a: np.ndarray, b: np.ndarray, *, tol: float = 1e-6) -> np.ndarray:
    """(len(a),) bool: rows of `a` with no equal row in `b` (angles compared as stored)."""
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    if len(b) == 0:
        return np.ones(len(a), dtype=bool)
    close = (np.abs(a[:, None, :] - b[None, :, :]) <= tol).all(axis=2)
    return ~close.any(axis=1)


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    scale = size / max(image.shape[:2])
    out = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, out, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _same_length(rounds: Sequence[int], **series: Sequence | None) -> None:
    for name, values in series.items():
        if values is not None and len(values) != len(rounds):
            raise InvalidInput(f"{name} has {len(values)} values for {len(rounds)} rounds")


def _figure():  # type: ignore[no-untyped-def]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _round_axis(ax, rounds: Sequence[int], xlabel: str = "round") -> None:  # type: ignore[no-untyped-def]
    ax.set_xticks(np.arange(len(rounds)), [str(r) for r in rounds])
    ax.set_xlabel(xlabel)


def _counts_axis(ax) -> None:  # type: ignore[no-untyped-def]
    """Counts, shares and losses are never negative: the y axis starts at 0, and an empty
    chart (nothing plotted, or all zeros) shows 0..1 instead of matplotlib's ±0.05."""
    low, high = ax.get_ylim()
    if low < 0:
        ax.set_ylim(0, high if high > 0 and ax.has_data() and _has_positive(ax) else 1)


def _has_positive(ax) -> bool:  # type: ignore[no-untyped-def]
    values = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    values += [np.array([p.get_y() + p.get_height() for p in ax.patches], dtype=float)]
    return any(np.nanmax(v, initial=0.0) > 0 for v in values if v.size)


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
