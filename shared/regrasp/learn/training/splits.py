"""Train / validation / test splits, object-wise or image-wise, deterministic by seed.

Research code splits "the first 90% of a sorted file list" and never records it. Here a
unit (an object for object-wise splits, an image for image-wise ones) is placed by the
SHA-256 of `seed:unit`: the units sorted by that hash, the first `test_fraction` of them
go to test, the next `val_fraction` to validation. So the split depends only on the seed
and the set of ids, never on the order they were listed in, and adding images of new
objects never moves an old object to another split. The `Split` is plain data that is
stored with the model (`to_dict` / `from_dict`).

Image ids are the database's integer ids everywhere (a Jacquard folder's images are
numbered by `cache.jacquard_images`). Where a list of ids is ordered, it is ordered by
`id_order`: the decimal string, as when ids were strings, so that splits, training caches
and the order images are trained in stay those of the models trained before.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from regrasp.platform.errors import InvalidInput

SplitKind = Literal["object", "image"]
SPLIT_NAMES = ("train", "val", "test")


def id_order(image_id: int) -> str:
    """Sort key of image ids (`sorted(ids, key=id_order)`): see the module docstring."""
    return str(image_id)


def as_image_ids(values: Iterable[object], what: str = "image ids") -> list[int]:
    """`values` as int image ids (ints or their decimal strings, as stored before);
    InvalidInput naming `what` for anything else (a bool, a float, a file name)."""
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral | str):
            raise InvalidInput(f"{what} must be integers, got {value!r}")
        try:
            out.append(int(value))
        except ValueError:
            raise InvalidInput(f"{what} must be integers, got {value!r}") from None
    return out


@dataclass(frozen=True)
class Split:
    """Image ids of each part (ordered by `id_order`); the parts are disjoint (checked)."""

    kind: SplitKind
    seed: int
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("object", "image"):
            raise InvalidInput(f"split kind must be 'object' or 'image', got {self.kind!r}")
        parts = [set(self.train), set(self.val), set(self.test)]
        if sum(map(len, parts)) != len(set().union(*parts)):
            raise InvalidInput("a split's train, val and test parts must be disjoint")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in model metadata and the `models.split` column."""
        return {
            "kind": self.kind,
            "seed": self.seed,
            **{name: list(getattr(self, name)) for name in SPLIT_NAMES},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Split:
        """Inverse of `to_dict` (also of splits stored with string ids); InvalidInput for
        a malformed mapping."""
        try:
            return cls(
                kind=data["kind"],
                seed=int(data["seed"]),
                **{name: tuple(as_image_ids(data[name], "split ids")) for name in SPLIT_NAMES},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"malformed split: {exc}") from exc

    def check_not_test(self, image_ids: Iterable[int]) -> None:
        """Raise InvalidInput if any of `image_ids` is a test image (test never trains)."""
        leaked = set(self.test).intersection(image_ids)
        if leaked:
            raise InvalidInput(
                f"{len(leaked)} test image(s) would reach training, e.g. {sorted(leaked)[:3]}"
            )


def make_split(
    image_ids: Sequence[int],
    object_ids: Sequence[str],
    *,
    kind: SplitKind = "object",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Split:
    """Split images (with the object of each, same length) into train / val / test.

    `kind="object"` places whole objects, so no object has images in two parts;
    `kind="image"` places images one by one. Each part gets `round(fraction × units)`
    units (objects or images). An image is ranked by its id's decimal string (`_rank`);
    duplicates are refused.
    """
    ids = as_image_ids(image_ids)
    objects = [str(o) for o in object_ids]
    if len(ids) != len(objects):
        raise InvalidInput(f"{len(ids)} image ids but {len(objects)} object ids")
    if len(set(ids)) != len(ids):
        raise InvalidInput("image ids must be unique")
    if kind not in ("object", "image"):
        raise InvalidInput(f"split kind must be 'object' or 'image', got {kind!r}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise InvalidInput(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise InvalidInput("val_fraction + test_fraction must be < 1")

    unit_of = objects if kind == "object" else [id_order(i) for i in ids]
    units = sorted(set(unit_of), key=lambda u: (_rank(seed, u), u))
    n_test = round(test_fraction * len(units))
    n_val = round(val_fraction * len(units))
    part_of_unit = {u: "test" for u in units[:n_test]}
    part_of_unit.update({u: "val" for u in units[n_test : n_test + n_val]})
    parts: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for image, unit in zip(ids, unit_of, strict=True):
        parts[part_of_unit.get(unit, "train")].append(image)
    return Split(
        kind=kind, seed=seed, **{k: tuple(sorted(v, key=id_order)) for k, v in parts.items()}
    )


def exclude_from_training(split: Split, image_ids: Iterable[int]) -> Split:
    """The split with `image_ids` taken out of its training part (val and test unchanged).

    What an out-of-fold model or a campaign with a fixed test set trains on: the excluded
    images are in no part, so the stored split says exactly which images were trained on.
    """
    excluded = set(image_ids)
    if not excluded.intersection(split.train):
        return split
    return Split(
        kind=split.kind,
        seed=split.seed,
        train=tuple(i for i in split.train if i not in excluded),
        val=split.val,
        test=split.test,
    )


def _rank(seed: int, unit: str) -> bytes:
    return hashlib.sha256(f"{seed}:{unit}".encode()).digest()
