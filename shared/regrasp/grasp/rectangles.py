"""Grasp rectangles and their file formats.

A grasp is one row `(x, y, theta, opening, jaw)` in image pixels (x right, y down), with
`theta` in degrees in that y-down frame. `opening` runs along `(cos θ, sin θ)`, `jaw`
across it. Arrays of grasps are float64 of shape (N, 5); columns are named by the `X`,
`Y`, `THETA`, `OPENING`, `JAW` indices so no code spells magic column numbers.

This module is the bottom of the library: numpy only, no torch, no storage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from regrasp.platform.errors import FormatError, InvalidInput

X, Y, THETA, OPENING, JAW = range(5)
COLUMNS = ("x", "y", "theta", "opening", "jaw")


def read_jacquard(path: str | Path) -> np.ndarray:
    """Read a Jacquard `*_grasps.txt` file: one `x;y;theta;opening;jaw` line per grasp.

    Returns (N, 5) float64, values exactly as written. Blank lines are ignored. A
    malformed line (wrong field count, not a number, NaN/inf, opening or jaw <= 0)
    raises FormatError naming the file and the 1-based line number; so does a file that
    is missing or not text.
    """
    return parse_jacquard(_read_text(path), source=str(path))


def parse_jacquard(text: str, *, source: str = "<grasps>") -> np.ndarray:
    """Parse the content of a Jacquard grasps file; see `read_jacquard`."""
    fast = _parse_jacquard_fast(text)
    if fast is not None:
        return fast
    # Something is wrong: the line-by-line reading names the first bad line.
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split(";")
        if len(fields) != 5:
            raise FormatError(
                f"{source}:{lineno}: expected 5 ';'-separated values, got {len(fields)}: {line!r}"
            )
        try:
            row = [float(f) for f in fields]
        except ValueError as exc:
            raise FormatError(f"{source}:{lineno}: not a number in {line!r}") from exc
        _check_row(row, source, lineno)
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def write_jacquard(path: str | Path, grasps: np.ndarray) -> None:
    """Write grasps in the Jacquard format; `read_jacquard` gives back the same values."""
    Path(path).write_text(format_jacquard(grasps), encoding="utf-8")


def format_jacquard(grasps: np.ndarray) -> str:
    """Jacquard file content for (N, 5) grasps, shortest round-tripping decimal per value."""
    grasps = as_grasps(grasps)
    return "".join(";".join(_fmt(v) for v in row) + "\n" for row in grasps.tolist())


def read_cornell(path: str | Path) -> np.ndarray:
    """Read a Cornell `pcdNNNNcpos.txt` corner file into (N, 5) grasps; see `parse_cornell`."""
    return parse_cornell(_read_text(path), source=str(path))


def parse_cornell(text: str, *, source: str = "<cpos>") -> np.ndarray:
    """Parse Cornell corner-file content into (N, 5) grasps.

    Four `x y` lines per rectangle; the first edge (corner 0 → 1) is the gripper
    opening, the second (1 → 2) the jaw. Rectangles with a NaN coordinate are skipped,
    as in every Cornell loader. A malformed line or a trailing partial rectangle raises
    FormatError naming the source and line.
    """
    points: list[tuple[float, float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise FormatError(f"{source}:{lineno}: expected 'x y', got {line!r}")
        try:
            points.append((float(fields[0]), float(fields[1])))
        except ValueError as exc:
            raise FormatError(f"{source}:{lineno}: not a number in {line!r}") from exc
    if len(points) % 4:
        raise FormatError(f"{source}: {len(points)} corner lines is not a multiple of 4")
    quads = np.asarray(points, dtype=np.float64).reshape(-1, 4, 2)
    quads = quads[np.isfinite(quads).all(axis=(1, 2))]
    return from_corners(quads)


def corners(grasps: np.ndarray) -> np.ndarray:
    """Corners of each rectangle, (N, 4, 2) as (x, y), in order around the rectangle.

    Corner 0 → 1 runs along the opening, 1 → 2 along the jaw, matching Cornell files.
    """
    g = as_grasps(grasps)
    t = np.deg2rad(g[:, THETA])
    u = np.stack([np.cos(t), np.sin(t)], axis=1) * (g[:, OPENING, None] / 2)
    v = np.stack([-np.sin(t), np.cos(t)], axis=1) * (g[:, JAW, None] / 2)
    c = g[:, [X, Y]]
    return np.stack([c - u - v, c + u - v, c + u + v, c - u + v], axis=1)


def from_corners(quads: np.ndarray) -> np.ndarray:
    """Inverse of `corners`: (N, 4, 2) corner quads to (N, 5) grasps (theta in [-90, 90))."""
    quads = np.asarray(quads, dtype=np.float64).reshape(-1, 4, 2)
    center = quads.mean(axis=1)
    edge = quads[:, 1] - quads[:, 0]
    theta = normalize_angle(np.rad2deg(np.arctan2(edge[:, 1], edge[:, 0])))
    opening = np.linalg.norm(edge, axis=1)
    jaw = np.linalg.norm(quads[:, 2] - quads[:, 1], axis=1)
    return np.column_stack([center, theta, opening, jaw])


def from_stroke(start: Iterable[float], end: Iterable[float], *, jaw: float) -> np.ndarray:
    """The grasp a person draws as one stroke from one jaw's position to the other's: (5,).

    Centre at the stroke's middle, `theta` along it, `opening` its length; the stroke
    says nothing across the opening, so `jaw` is given (the review screen uses the
    image's median label jaw). InvalidInput for a stroke too short to be a grasp.
    """
    a = np.asarray(list(start), dtype=np.float64)
    b = np.asarray(list(end), dtype=np.float64)
    if a.shape != (2,) or b.shape != (2,) or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InvalidInput("a stroke needs a finite start and end point (x, y)")
    d = b - a
    opening = float(np.hypot(*d))
    if opening < 1.0:
        raise InvalidInput("the stroke is shorter than a pixel: drag from one jaw to the other")
    if not (math.isfinite(jaw) and jaw > 0):
        raise InvalidInput(f"jaw must be a positive number of pixels, got {jaw!r}")
    theta = float(normalize_angle(np.rad2deg(np.arctan2(d[1], d[0]))))
    return np.array([*(a + b) / 2, theta, opening, float(jaw)])


def normalize_angle(theta: np.ndarray | float) -> np.ndarray:
    """Angles in degrees mapped to [-90, 90): a grasp is the same under θ ± 180°."""
    return (np.asarray(theta, dtype=np.float64) + 90.0) % 180.0 - 90.0


def angle_difference(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Smallest difference between grasp angles in degrees, modulo 180°: in [0, 90]."""
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) % 180.0
    return np.minimum(d, 180.0 - d)


def as_grasps(grasps: np.ndarray | Iterable) -> np.ndarray:
    """Validate and convert to (N, 5) float64: finite values, opening and jaw > 0."""
    g = np.asarray(grasps, dtype=np.float64)
    if g.ndim == 1 and g.size == 5:
        g = g.reshape(1, 5)
    if g.size == 0:
        return g.reshape(0, 5)
    if g.ndim != 2 or g.shape[1] != 5:
        raise InvalidInput(f"grasps must have shape (N, 5), got {g.shape}")
    if not np.isfinite(g).all():
        raise InvalidInput("grasps contain NaN or infinite values")
    if (g[:, [OPENING, JAW]] <= 0).any():
        raise InvalidInput("grasp opening and jaw must be positive")
    return g


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not a text file ({exc.reason})") from exc
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _parse_jacquard_fast(text: str) -> np.ndarray | None:
    """The grasps of a well-formed file at C speed (an importer parses 54k of them), or
    None when any line is not five finite numbers with a positive opening and jaw."""
    lines = [line for line in text.splitlines() if line.strip()]
    if any(line.count(";") != 4 for line in lines):
        return None
    try:
        values = list(map(float, ";".join(lines).split(";"))) if lines else []
    except ValueError:
        return None
    grasps = np.asarray(values, dtype=np.float64).reshape(-1, 5)
    if not np.isfinite(grasps).all() or (grasps[:, [OPENING, JAW]] <= 0).any():
        return None
    return grasps


def _check_row(row: list[float], source: str, lineno: int) -> None:
    if not all(math.isfinite(v) for v in row):
        raise FormatError(f"{source}:{lineno}: NaN or infinite value")
    if row[OPENING] <= 0 or row[JAW] <= 0:
        raise FormatError(f"{source}:{lineno}: opening and jaw must be positive")


def _fmt(value: float) -> str:
    # repr gives the shortest string that parses back to the same float.
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text
