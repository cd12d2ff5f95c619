"""Reader of the Jacquard grasp dataset, from its folder tree or a zip of it.

Layout (DESIGN, "Grasp conventions"): `root/<object>/<i>_<object>_{RGB.png,
perfect_depth.tiff, stereo_depth.tiff, mask.png, grasps.txt}`. The tree may sit under
any prefix (Jacquard ships as `Jacquard_Dataset_N/<object>/…`); an image is identified by
its file-name stem `<i>_<object>` and its object id is the `<object>` part, the unit of
object-wise splits.

Scanning lists file names only and checks that every image has all its files; pixels and
grasps are read on demand by `JacquardImage.load_*`, which validate dtype and shape and
raise FormatError naming the file. `JacquardDataset.validate()` reads everything up front,
for an importer that wants to refuse a broken dataset before writing anything.

    with scan_jacquard("/data/jacquard.zip") as dataset:
        for image in dataset:
            depth, grasps = image.load_depth(), image.load_grasps()
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np

from regrasp.data.formats.sources import (
    MAX_FILE_BYTES,
    ScannedDataset,
    Source,
    as_format_error,
    open_source,
    read_text,
)
from regrasp.grasp.imaging import MAX_SIDE, decode_depth, decode_mask, decode_rgb
from regrasp.grasp.rectangles import format_jacquard, parse_jacquard
from regrasp.platform.errors import FormatError, InvalidInput

#: File-name suffix of each kind of file of an image, after `<i>_<object>`.
SUFFIXES: Mapping[str, str] = MappingProxyType(
    {
        "rgb": "_RGB.png",
        "perfect_depth": "_perfect_depth.tiff",
        "stereo_depth": "_stereo_depth.tiff",
        "mask": "_mask.png",
        "grasps": "_grasps.txt",
    }
)
KINDS: tuple[str, ...] = tuple(SUFFIXES)

_STEM = re.compile(r"^(?P<index>\d+)_(?P<object>[^/]+)$")
_INTEGRAL_WITH_POINT = re.compile(r"^[+-]?\d+\.0+$")
_INTEGRAL_BARE = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True, slots=True)
class JacquardImage:
    """One Jacquard image: its ids and the files it is made of, loaded on demand.

    `name` is the file-name stem `<i>_<object>` (e.g. "0_1a9fa4c2…"); `paths` maps each
    kind in `KINDS` present to its name inside the source (a relative POSIX path).
    """

    object_id: str
    name: str
    index: int
    paths: Mapping[str, str]
    source: Source = field(repr=False, compare=False)
    max_side: int = field(default=MAX_SIDE, repr=False, compare=False)

    def location(self, kind: str) -> str:
        """Where the file of `kind` lives, for messages: a path or `archive.zip:member`."""
        return self.source.location(self._name(kind))

    def read_bytes(self, kind: str) -> bytes:
        """The raw file of `kind` (e.g. to store it unchanged in the object store)."""
        return self.source.read_bytes(self._name(kind))

    def load_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        return self._decode("rgb", decode_rgb)

    def load_depth(self, kind: Literal["perfect", "stereo"] = "perfect") -> np.ndarray:
        """(H, W) float32 metres. Stereo depth keeps −1 where invalid, as stored."""
        if kind not in ("perfect", "stereo"):
            raise InvalidInput(f"depth kind must be 'perfect' or 'stereo', got {kind!r}")
        return self._decode(f"{kind}_depth", decode_depth)

    def load_mask(self) -> np.ndarray:
        """(H, W) bool object mask."""
        return self._decode("mask", decode_mask)

    def load_grasps(self) -> np.ndarray:
        """(N, 5) float64 grasps in image pixels, exactly as written."""
        name = self._name("grasps")
        return parse_jacquard(read_text(self.source, name), source=self.source.location(name))

    def validate(self) -> None:
        """Read every file; FormatError naming the first that is unreadable or inconsistent.

        Beyond what each loader checks, all images of one sample must have the same size.
        """
        height, width = self.load_rgb().shape[:2]
        loaders = {
            "perfect_depth": lambda: self.load_depth("perfect"),
            "stereo_depth": lambda: self.load_depth("stereo"),
            "mask": self.load_mask,
        }
        for kind, load in loaders.items():
            if kind not in self.paths:
                continue
            shape = load().shape[:2]
            if shape != (height, width):
                raise FormatError(
                    f"{self.location(kind)}: size {shape[1]}×{shape[0]} differs from the "
                    f"RGB image's {width}×{height}"
                )
        self.load_grasps()

    def _name(self, kind: str) -> str:
        if kind not in SUFFIXES:
            raise InvalidInput(f"unknown Jacquard file kind {kind!r}; known: {', '.join(KINDS)}")
        try:
            return self.paths[kind]
        except KeyError:
            raise FormatError(f"{self.name}: has no {SUFFIXES[kind]} file") from None

    def _decode(self, kind: str, decode: Callable[..., np.ndarray]) -> np.ndarray:
        name = self._name(kind)
        data = self.source.read_bytes(name)
        try:
            return decode(data, max_side=self.max_side)
        except InvalidInput as exc:
            raise as_format_error(self.source, name, exc) from exc


class JacquardDataset(ScannedDataset[JacquardImage]):
    """The scanned images of a Jacquard source, sorted by object id then image index."""


def scan_jacquard(
    root: str | Path | Source,
    *,
    required: Collection[str] = KINDS,
    max_side: int = MAX_SIDE,
    max_file_bytes: int = MAX_FILE_BYTES,
    roots: Sequence[str | Path] = (),
) -> JacquardDataset:
    """List the images of a Jacquard folder or zip archive without reading any pixel.

    Every image must have the files of `required` kinds (all five by default); a missing
    one raises FormatError naming the file expected. Files that are not Jacquard files
    (a README, say) are ignored. The same image name in two places, or a source with no
    image at all, is refused. `max_side` bounds the image sizes the loaders accept; `roots`
    confine a folder's files (`FolderSource`).
    """
    unknown = set(required) - set(KINDS)
    if unknown:
        raise InvalidInput(f"unknown Jacquard file kinds {sorted(unknown)}; known: {KINDS}")
    source = (
        root
        if not isinstance(root, str | Path)
        else open_source(root, max_file_bytes=max_file_bytes, roots=roots)
    )
    try:
        images = _collect(source, required=required, max_side=max_side)
    except BaseException:
        source.close()
        raise
    return JacquardDataset(source, images)


def _collect(source: Source, *, required: Collection[str], max_side: int) -> list[JacquardImage]:
    groups: dict[str, tuple[str, dict[str, str]]] = {}  # stem → (folder, kind → name)
    for name in source.names():
        folder, _, base = name.rpartition("/")
        for kind, suffix in SUFFIXES.items():
            if base.endswith(suffix) and len(base) > len(suffix):
                stem = base[: -len(suffix)]
                seen_folder, paths = groups.setdefault(stem, (folder, {}))
                if seen_folder != folder:
                    raise FormatError(
                        f"{source.location(name)}: image {stem!r} also appears in "
                        f"{source.location(seen_folder or '.')}"
                    )
                paths[kind] = name
                break
    images = []
    for stem, (folder, paths) in groups.items():
        match = _STEM.match(stem)
        if match is None:
            some = next(iter(paths.values()))
            raise FormatError(
                f"{source.location(some)}: file name is not '<index>_<object>{SUFFIXES['rgb']}'-"
                "style Jacquard naming"
            )
        missing = [k for k in KINDS if k in required and k not in paths]
        if missing:
            expected = "/".join(filter(None, [folder, stem + SUFFIXES[missing[0]]]))
            raise FormatError(
                f"{source.location(expected)}: missing ({len(missing)} of the image's "
                f"files absent: {', '.join(SUFFIXES[k] for k in missing)})"
            )
        images.append(
            JacquardImage(
                object_id=match["object"],
                name=stem,
                index=int(match["index"]),
                paths=MappingProxyType(dict(paths)),
                source=source,
                max_side=max_side,
            )
        )
    if not images:
        raise FormatError(
            f"{source.root}: no Jacquard image found (no '*_grasps.txt' and siblings)"
        )
    images.sort(key=lambda im: (im.object_id, im.index, im.name))
    return images


def rewrite_grasps_file(original: bytes, grasps: np.ndarray) -> bytes:
    """A grasps file holding `grasps` (N, 5), written in the style of `original`'s bytes.

    Exports must not change what did not change: when `grasps` are exactly the values of
    `original` (same rows, same order) the original bytes come back untouched. Otherwise
    the lines of `original` whose values are still labels are kept as they were written
    (in their order), the new rows follow, and every line ends as the original's lines do
    (CRLF or LF), with integral values written as the original writes them (`114.0` or
    `114`). An original that is not a Jacquard grasps file (a Cornell corner file, say)
    gives the plain `format_jacquard` text.
    """
    grasps = np.asarray(grasps, dtype=np.float64).reshape(-1, 5)
    try:
        text = original.decode("utf-8")
        values = parse_jacquard(text)
    except (UnicodeDecodeError, FormatError):
        return format_jacquard(grasps).encode("ascii")
    if values.shape == grasps.shape and np.array_equal(values, grasps):
        return original
    newline = "\r\n" if "\r\n" in text else ("\r" if "\r" in text and "\n" not in text else "\n")
    lines = [line for line in text.splitlines() if line.strip()]
    point_zero = _integral_style(lines)
    wanted: dict[tuple[float, ...], int] = {}
    for row in map(tuple, grasps.tolist()):
        wanted[row] = wanted.get(row, 0) + 1
    kept: list[str] = []
    for line, row in zip(lines, map(tuple, values.tolist()), strict=True):
        if wanted.get(row, 0) > 0:
            wanted[row] -= 1
            kept.append(line)
    # The rows no kept line matched are the new ones, in their given order.
    new_rows = _unmatched_rows(grasps, unmatched=wanted)
    kept += [";".join(_styled(v, point_zero) for v in row) for row in new_rows]
    ends_with_newline = text.endswith(("\n", "\r")) or not text
    body = newline.join(kept)
    if kept and ends_with_newline:
        body += newline
    return body.encode("utf-8")


def _unmatched_rows(
    grasps: np.ndarray, *, unmatched: dict[tuple[float, ...], int]
) -> list[tuple[float, ...]]:
    """The rows of `grasps` the original's kept lines did not take: of each distinct row,
    its last `unmatched[row]` occurrences, in order."""
    total: dict[tuple[float, ...], int] = {}
    for row in map(tuple, grasps.tolist()):
        total[row] = total.get(row, 0) + 1
    taken = {row: total[row] - unmatched.get(row, 0) for row in total}
    out = []
    for row in map(tuple, grasps.tolist()):
        if taken[row] > 0:
            taken[row] -= 1
        else:
            out.append(row)
    return out


def _integral_style(lines: Sequence[str]) -> bool:
    """True when the file writes integral values with a point (`24.0`), as Jacquard does;
    a file with no integral value follows its other numbers (all with a point, or not)."""
    tokens = [t.strip() for line in lines for t in line.split(";")]
    if any(_INTEGRAL_WITH_POINT.match(t) for t in tokens):
        return True
    if any(_INTEGRAL_BARE.match(t) for t in tokens):
        return False
    return bool(tokens) and all("." in t for t in tokens)


def _styled(value: float, point_zero: bool) -> str:
    text = repr(float(value))
    if text.endswith(".0") and not point_zero:
        return text[:-2]
    return text
