"""The truth manifest of a synthetic dataset: what each image really is.

A generated dataset is a plain Jacquard folder (`<root>/<object>/<i>_<object>_*`) that any
Jacquard reader imports; the truth sits beside it so that evaluation and the simulated
reviewer can know what the written labels hide:

- `<root>/synthetic.json`: the generation parameters (seed, size, counts, kinds);
- `<root>/truth.jsonl`: one JSON object per image, in (object, index) order, holding the
  family, the exact outline (WKT, pixels), the clean grasps, and the corruption applied to
  the written labels (kind, category, decision a careful reviewer would make, indices of
  the wrong rectangles).

No timestamps and fixed key order, so the same generation gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.errors import GEOSException

from regrasp.grasp.rectangles import as_grasps
from regrasp.platform.errors import FormatError, NotFound

#: Generation parameters, at the dataset root.
META_FILE = "synthetic.json"
#: One truth record per image, at the dataset root.
TRUTH_FILE = "truth.jsonl"
#: The files of one Jacquard image, by role: `<i>_<object>_<suffix>`.
IMAGE_FILES = {
    "rgb": "RGB.png",
    "perfect_depth": "perfect_depth.tiff",
    "stereo_depth": "stereo_depth.tiff",
    "mask": "mask.png",
    "grasps": "grasps.txt",
}


@dataclass(frozen=True, eq=False)
class TruthRecord:
    """The truth about one synthetic image.

    grasps: (N, 5) the clean ground truth (pixels). groups: (N,) orientation group of each.
    shape: the object outline in pixels. max_opening: gripper stroke, pixels. For a
    corrupted image `corruption` is the kind, `category` "missing_label" or
    "annotation_error", `expected_decision` what a careful reviewer decides, and
    `wrong_labels` the indices (into the written labels) of rectangles that are not grasps;
    all are None / empty for a clean image. `labels_written` counts the written rectangles.
    """

    object_id: str
    index: int
    family: str
    size: int
    grasps: np.ndarray
    groups: np.ndarray
    shape: shapely.Polygon
    max_opening: float
    labels_written: int
    corruption: str | None = None
    category: str | None = None
    expected_decision: str | None = None
    wrong_labels: tuple[int, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """The Jacquard image name, `<i>_<object>`."""
        return f"{self.index}_{self.object_id}"

    @property
    def corrupted(self) -> bool:
        """Whether the written labels differ from the truth."""
        return self.corruption is not None

    def paths(self, root: str | Path) -> dict[str, Path]:
        """The image's files under a dataset root, by role (keys of `IMAGE_FILES`)."""
        folder = Path(root) / self.object_id
        return {role: folder / f"{self.stem}_{suffix}" for role, suffix in IMAGE_FILES.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the line written to `truth.jsonl`."""
        return {
            "object": self.object_id,
            "index": self.index,
            "stem": self.stem,
            "family": self.family,
            "size": self.size,
            "max_opening": self.max_opening,
            "corruption": self.corruption,
            "category": self.category,
            "expected_decision": self.expected_decision,
            "wrong_labels": list(self.wrong_labels),
            "labels_written": self.labels_written,
            "detail": self.detail,
            "shape": shapely.to_wkt(self.shape, rounding_precision=4),
            "groups": [int(v) for v in self.groups],
            "grasps": self.grasps.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TruthRecord:
        """Inverse of `to_dict`; a missing or malformed field raises FormatError."""
        try:
            grasps = as_grasps(np.asarray(data["grasps"], dtype=np.float64).reshape(-1, 5))
            groups = np.asarray(data["groups"], dtype=np.int64)
            shape = shapely.from_wkt(data["shape"])
            record = cls(
                object_id=str(data["object"]),
                index=int(data["index"]),
                family=str(data["family"]),
                size=int(data["size"]),
                grasps=grasps,
                groups=groups,
                shape=shape,
                max_opening=float(data["max_opening"]),
                labels_written=int(data["labels_written"]),
                corruption=data.get("corruption"),
                category=data.get("category"),
                expected_decision=data.get("expected_decision"),
                wrong_labels=tuple(int(i) for i in data.get("wrong_labels", ())),
                detail=dict(data.get("detail") or {}),
            )
        except (KeyError, TypeError, ValueError, GEOSException) as exc:
            raise FormatError(f"malformed truth record: {exc!r}") from exc
        if groups.shape != (len(grasps),):
            raise FormatError(f"truth record {record.stem}: one group per grasp expected")
        return record


@dataclass(frozen=True, eq=False)
class Manifest:
    """A generated dataset: its root, generation parameters and one record per image."""

    root: Path
    params: dict[str, Any]
    records: list[TruthRecord]

    def by_stem(self) -> dict[str, TruthRecord]:
        """Records keyed by Jacquard image name `<i>_<object>`."""
        return {r.stem: r for r in self.records}

    def corrupted(self) -> list[TruthRecord]:
        """The records whose written labels differ from the truth."""
        return [r for r in self.records if r.corrupted]


def write_manifest(root: str | Path, params: Mapping[str, Any], records: list[TruthRecord]) -> None:
    """Write `synthetic.json` and `truth.jsonl` under `root` (records in the given order)."""
    root = Path(root)
    (root / META_FILE).write_text(json.dumps(dict(params), indent=2) + "\n", encoding="utf-8")
    with (root / TRUTH_FILE).open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.to_dict(), separators=(",", ":")) + "\n")


def read_manifest(root: str | Path) -> Manifest:
    """Read the truth of a generated dataset; NotFound when `root` holds none."""
    root = Path(root)
    meta, truth = root / META_FILE, root / TRUTH_FILE
    if not meta.is_file() or not truth.is_file():
        raise NotFound(f"{root} holds no synthetic truth manifest ({META_FILE}, {TRUTH_FILE})")
    try:
        params = json.loads(meta.read_text(encoding="utf-8"))
        records = []
        with truth.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        records.append(TruthRecord.from_dict(json.loads(line)))
                    except FormatError as exc:
                        raise FormatError(f"{truth}:{lineno}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise FormatError(f"{root}: manifest is not valid JSON ({exc})") from exc
    return Manifest(root=root, params=params, records=records)


def as_truth(truth: TruthRecord | Mapping[str, Any]) -> TruthRecord:
    """A TruthRecord from a record or its `to_dict` form (a manifest line)."""
    return truth if isinstance(truth, TruthRecord) else TruthRecord.from_dict(truth)
