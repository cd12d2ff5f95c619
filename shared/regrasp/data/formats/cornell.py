"""Reader of the Cornell grasp dataset, from its folder tree.

Layout: folders (`01/`, `02/`, …) of `pcdNNNNr.png` (640×480 RGB), `pcdNNNNcpos.txt`
(positive rectangles as four `x y` corner lines, read by `regrasp.grasp.rectangles.read_cornell`),
and optionally `pcdNNNNd.tiff` (float depth in metres, as GG-CNN's conversion script
writes it) and `pcdNNNN.txt` (the original ASCII point cloud). Negative rectangles
(`cneg`) and background images are ignored.

Object ids come from a mapping image number → object id: Cornell's `z.txt` (one line per
image: `<image number> <object id> <description…>`), found at the root or passed in;
without one every image is its own object (image-wise splits only).

Scanning lists file names; pixels are read on demand and validated, errors are FormatError
naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from regrasp.data.formats.sources import (
    MAX_FILE_BYTES,
    FolderSource,
    ScannedDataset,
    as_format_error,
    read_text,
)
from regrasp.grasp.imaging import MAX_SIDE, decode_depth, decode_rgb
from regrasp.grasp.rectangles import parse_cornell
from regrasp.platform.errors import FormatError, InvalidInput

#: (height, width) of Cornell images, the grid the point cloud's `index` field refers to.
CORNELL_SHAPE = (480, 640)
#: Point clouds store millimetres; depth is metres.
_MM_PER_M = 1000.0

_FILE = re.compile(r"^pcd(?P<number>\d{4})(?P<kind>r\.png|cpos\.txt|d\.tiff|\.txt)$")
_KINDS = {"r.png": "rgb", "cpos.txt": "grasps", "d.tiff": "depth", ".txt": "pcd"}
REQUIRED = ("rgb", "grasps")


@dataclass(frozen=True, slots=True)
class CornellImage:
    """One Cornell image: ids and files (`paths`: kind → name under the root), loaded on demand.

    Kinds: "rgb" and "grasps" always, "depth" (TIFF) and "pcd" (point cloud) when present.
    """

    object_id: str
    name: str
    number: int
    paths: Mapping[str, str]
    source: FolderSource = field(repr=False, compare=False)
    max_side: int = field(default=MAX_SIDE, repr=False, compare=False)

    def location(self, kind: str) -> str:
        """The path of the file of `kind`, for messages."""
        return self.source.location(self._name(kind))

    def load_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        name = self._name("rgb")
        try:
            return decode_rgb(self.source.read_bytes(name), max_side=self.max_side)
        except InvalidInput as exc:
            raise as_format_error(self.source, name, exc) from exc

    def load_depth(self) -> np.ndarray:
        """(H, W) float32 metres, from the TIFF if present, else from the point cloud.

        Pixels the point cloud has no point for are 0 (invalid, see `imaging.depth_valid`).
        """
        if "depth" in self.paths:
            name = self.paths["depth"]
            try:
                return decode_depth(self.source.read_bytes(name), max_side=self.max_side)
            except InvalidInput as exc:
                raise as_format_error(self.source, name, exc) from exc
        if "pcd" in self.paths:
            name = self.paths["pcd"]
            return parse_pcd_depth(read_text(self.source, name), source=self.location("pcd"))
        raise FormatError(f"{self.name}: has neither pcd{self.number:04d}d.tiff nor a point cloud")

    def load_grasps(self) -> np.ndarray:
        """(N, 5) float64 grasps in image pixels (rectangles with NaN corners skipped)."""
        name = self.paths["grasps"]
        return parse_cornell(read_text(self.source, name), source=self.location("grasps"))

    def validate(self) -> None:
        """Read every file present; FormatError naming the first unreadable or inconsistent."""
        height, width = self.load_rgb().shape[:2]
        if "depth" in self.paths or "pcd" in self.paths:
            shape = self.load_depth().shape
            if shape != (height, width):
                kind = "depth" if "depth" in self.paths else "pcd"
                raise FormatError(
                    f"{self.location(kind)}: size {shape[1]}×{shape[0]} differs from the RGB "
                    f"image's {width}×{height}"
                )
        self.load_grasps()

    def _name(self, kind: str) -> str:
        try:
            return self.paths[kind]
        except KeyError:
            raise FormatError(f"{self.name}: has no {kind} file") from None


class CornellDataset(ScannedDataset[CornellImage]):
    """The scanned images of a Cornell folder, sorted by image number."""


def scan_cornell(
    root: str | Path,
    *,
    object_ids: Mapping[int, str] | str | Path | None = None,
    max_side: int = MAX_SIDE,
    max_file_bytes: int = MAX_FILE_BYTES,
    roots: Sequence[str | Path] = (),
) -> CornellDataset:
    """List the images of a Cornell folder without reading any pixel.

    Each image needs `pcdNNNNr.png` and `pcdNNNNcpos.txt`; a missing one raises
    FormatError naming the file expected. `object_ids` maps image numbers to object ids,
    or is the path of a `z.txt`; when None, `root/z.txt` is used if it exists, else each
    image is its own object. With a mapping, an image it does not cover is refused.
    `roots` confine the files read (`FolderSource`).
    """
    source = FolderSource(root, max_file_bytes=max_file_bytes, roots=roots)
    if object_ids is None and (Path(root) / "z.txt").is_file():
        object_ids = Path(root) / "z.txt"
    if isinstance(object_ids, str | Path):
        object_ids = read_object_ids(object_ids)

    groups: dict[int, tuple[str, dict[str, str]]] = {}
    for name in source.names():
        folder, _, base = name.rpartition("/")
        match = _FILE.match(base)
        if match is None:
            continue
        number = int(match["number"])
        seen_folder, paths = groups.setdefault(number, (folder, {}))
        if seen_folder != folder:
            raise FormatError(
                f"{source.location(name)}: image pcd{number:04d} also appears in "
                f"{source.location(seen_folder or '.')}"
            )
        paths[_KINDS[match["kind"]]] = name

    images = []
    for number, (folder, paths) in sorted(groups.items()):
        stem = f"pcd{number:04d}"
        for kind, suffix in (("rgb", "r.png"), ("grasps", "cpos.txt")):
            if kind not in paths:
                expected = "/".join(filter(None, [folder, stem + suffix]))
                raise FormatError(f"{source.location(expected)}: missing")
        if object_ids is None:
            object_id = stem
        elif number in object_ids:
            object_id = str(object_ids[number])
        else:
            raise FormatError(f"{source.location(paths['rgb'])}: no object id for image {number}")
        images.append(
            CornellImage(
                object_id=object_id,
                name=stem,
                number=number,
                paths=MappingProxyType(dict(paths)),
                source=source,
                max_side=max_side,
            )
        )
    if not images:
        raise FormatError(f"{root}: no Cornell image found (no 'pcdNNNNr.png')")
    return CornellDataset(source, images)


def read_object_ids(path: str | Path) -> dict[int, str]:
    """Parse Cornell's `z.txt`: `<image number> <object id> <description…>` per line."""
    path = Path(path)
    ids: dict[int, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read the object mapping ({exc})") from exc
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            raise FormatError(f"{path}:{lineno}: expected '<image number> <object id> …'")
        ids[int(fields[0])] = fields[1]
    return ids


def parse_pcd_depth(
    text: str, *, shape: tuple[int, int] = CORNELL_SHAPE, source: str = "<pcd>"
) -> np.ndarray:
    """Depth image (float32 metres) from a Cornell ASCII point cloud, as GG-CNN computes it.

    Each point `x y z rgb index` (millimetres) lands on pixel `divmod(index, width)` with
    value ‖(x, y, z)‖ / 1000; pixels without a point are 0 (invalid).
    """
    header, sep, body = text.partition("\nDATA ascii")
    if not sep:
        raise FormatError(f"{source}: not an ASCII PCD file (no 'DATA ascii' line)")
    fields_line = next((ln for ln in header.splitlines() if ln.startswith("FIELDS")), None)
    if fields_line is None:
        raise FormatError(f"{source}: PCD header has no FIELDS line")
    fields = fields_line.split()[1:]
    if not {"x", "y", "z", "index"} <= set(fields):
        raise FormatError(f"{source}: PCD fields {fields} lack x, y, z or index")
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError as exc:
        raise FormatError(f"{source}: not a number in the point data") from exc
    if values.size % len(fields):
        raise FormatError(f"{source}: point data is not a whole number of {len(fields)}-field rows")
    points = values.reshape(-1, len(fields))
    col = {f: i for i, f in enumerate(fields)}
    index = points[:, col["index"]]
    if len(index) and (
        (index < 0).any() or (index >= shape[0] * shape[1]).any() or (index % 1).any()
    ):
        raise FormatError(f"{source}: point index outside the {shape[1]}×{shape[0]} image")
    depth = np.zeros(shape, dtype=np.float32)
    xyz = points[:, [col["x"], col["y"], col["z"]]]
    depth.flat[index.astype(np.int64)] = np.linalg.norm(xyz, axis=1) / _MM_PER_M
    return depth


def pcd_depth_tiff(data: bytes, source: str = "<pcd>") -> bytes:
    """A Cornell point cloud's bytes → the float32 TIFF of its depth image (metres).

    What an importer stores for an image that has only a point cloud. A plain function of
    picklable arguments, so a process pool can run it (parsing a cloud is CPU-bound).
    """
    import cv2

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{source}: not a UTF-8 text file ({exc.reason})") from exc
    ok, encoded = cv2.imencode(".tiff", parse_pcd_depth(text, source=source))
    if not ok:
        raise FormatError(f"{source}: depth could not be encoded")
    return encoded.tobytes()
