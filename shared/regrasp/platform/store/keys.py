"""The one module that builds object-store keys (DESIGN.md, "Object store layout").

    datasets/<dataset>/<object>/<image>/{rgb.png, depth.tiff, stereo_depth.tiff, mask.png,
                                         grasps.txt}
    cache/<dataset>/v<version>/<shard path>       decoded, resized training tensors
    models/<model>/{weights.pt, metadata.json, checkpoints/epoch-NNNN.pt, ...}
    exports/<dataset>/v<version>/<file path>

Building keys anywhere else would let two services disagree on where a thing lives, so
every caller goes through these functions. Each name component (dataset, object, image,
model) is checked here: 1-128 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`
(which also rules out `.` and `..`), so a component can never add or climb a level.
Prefix functions end with `/`, so `cache_prefix("d", 1)` never matches version 10.

`owner_of` reads a key back to what owns it (a dataset, a dataset version's cache or
export, a model), so `regrasp.data.gc` can tell referenced objects from orphans without
building a key by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from regrasp.platform.errors import InvalidInput

ImageFileKind = Literal["rgb", "depth", "stereo_depth", "mask", "grasps"]

#: File name of each per-image file kind (the Jacquard files, renamed by role).
IMAGE_FILE_NAMES: dict[ImageFileKind, str] = {
    "rgb": "rgb.png",
    "depth": "depth.tiff",
    "stereo_depth": "stereo_depth.tiff",
    "mask": "mask.png",
    "grasps": "grasps.txt",
}

DATASETS_ROOT = "datasets"
CACHE_ROOT = "cache"
MODELS_ROOT = "models"
EXPORTS_ROOT = "exports"
META_ROOT = "meta"
#: The top-level folders Regrasp writes; anything else in a bucket is someone else's.
MANAGED_ROOTS = (DATASETS_ROOT, META_ROOT, CACHE_ROOT, MODELS_ROOT, EXPORTS_ROOT)

WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"
CHECKPOINTS_FOLDER = "checkpoints"

_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"v(\d+)")
_CHECKPOINT = re.compile(r"epoch-(\d{4,})\.pt")
_KIND_BY_FILE = {name: kind for kind, name in IMAGE_FILE_NAMES.items()}


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """What a key under one of the `MANAGED_ROOTS` belongs to (`owner_of`).

    kind: "dataset" (`datasets/<name>/…` image files), "meta" (`meta/<name>/…`), "cache"
    (`cache/<name>/v<version>/…`), "export" (`exports/<name>/v<version>/…`) or "model"
    (`models/<name>/…`). `version` is None for the kinds without one, and for a cache or
    export key whose version part is malformed (nothing Regrasp writes: an orphan).
    """

    kind: Literal["dataset", "meta", "cache", "export", "model"]
    name: str
    version: int | None = None


@dataclass(frozen=True, slots=True)
class ImageFileRef:
    """The parts of a `datasets/<dataset>/<object>/<image>/<file>` key."""

    dataset: str
    obj: str
    image: str
    kind: ImageFileKind


# -- datasets ------------------------------------------------------------------------------


def dataset_prefix(dataset: str) -> str:
    """`datasets/<dataset>/`: every image file of a dataset."""
    return f"{DATASETS_ROOT}/{_component(dataset, 'dataset')}/"


def dataset_meta_key(dataset: str, name: str) -> str:
    """`meta/<dataset>/<name>`: files about a dataset as a whole (e.g. a synthetic truth
    manifest), kept apart from `datasets/` so no name can collide with an object folder."""
    return f"{META_ROOT}/{_component(dataset, 'dataset')}/{_component(name, 'name')}"


def object_prefix(dataset: str, obj: str) -> str:
    """`datasets/<dataset>/<object>/`: every image file of one object."""
    return f"{dataset_prefix(dataset)}{_component(obj, 'object')}/"


def image_prefix(dataset: str, obj: str, image: str) -> str:
    """`datasets/<dataset>/<object>/<image>/`: the files of one image."""
    return f"{object_prefix(dataset, obj)}{_component(image, 'image')}/"


def image_file_key(dataset: str, obj: str, image: str, kind: ImageFileKind) -> str:
    """Key of one file of an image, e.g. `datasets/jacquard/1a2b/0_1a2b/rgb.png`."""
    if kind not in IMAGE_FILE_NAMES:
        raise InvalidInput(
            f"unknown image file kind {kind!r}; known: {', '.join(get_args(ImageFileKind))}"
        )
    return f"{image_prefix(dataset, obj, image)}{IMAGE_FILE_NAMES[kind]}"


def parse_image_file_key(key: str) -> ImageFileRef:
    """Split a key made by `image_file_key` back into its parts; InvalidInput otherwise."""
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) != 5 or parts[0] != DATASETS_ROOT or parts[4] not in _KIND_BY_FILE:
        raise InvalidInput(
            f"{key!r} is not an image file key "
            f"(datasets/<dataset>/<object>/<image>/{{{','.join(_KIND_BY_FILE)}}})"
        )
    dataset, obj, image = (
        _component(parts[1], "dataset"),
        _component(parts[2], "object"),
        _component(parts[3], "image"),
    )
    return ImageFileRef(dataset=dataset, obj=obj, image=image, kind=_KIND_BY_FILE[parts[4]])


def dataset_store_name(name: str, dataset_id: int) -> str:
    """A dataset's name in cache keys: its name when it is a valid component, else `id-N`."""
    try:
        _component(name, "dataset")
    except InvalidInput:
        return f"id-{int(dataset_id)}"
    return name


# -- training caches -------------------------------------------------------------------------


def cache_prefix(dataset: str, version: int) -> str:
    """`cache/<dataset>/v<version>/`: the decoded training tensors of one dataset version."""
    return f"{CACHE_ROOT}/{_component(dataset, 'dataset')}/v{_version(version)}/"


def cache_shard_key(dataset: str, version: int, name: str) -> str:
    """Key of one cache shard; `name` may hold `/` (e.g. `300px/train-00001.npz`)."""
    return f"{cache_prefix(dataset, version)}{_relpath(name, 'cache shard name')}"


# -- models ------------------------------------------------------------------------------------


def model_store_name(model_row_id: int) -> str:
    """The object-store name of a model (`models/<name>/…`): its `models` row id."""
    return str(int(model_row_id))


def model_prefix(model: str) -> str:
    """`models/<model>/`: everything a training run wrote for one model."""
    return f"{MODELS_ROOT}/{_component(model, 'model')}/"


def model_key(model: str, name: str) -> str:
    """Key of a file of a model; `name` may hold `/` (e.g. `plots/loss.png`)."""
    return f"{model_prefix(model)}{_relpath(name, 'model file name')}"


def weights_key(model: str) -> str:
    """`models/<model>/weights.pt`: the final `state_dict`."""
    return model_key(model, WEIGHTS_FILE)


def metadata_key(model: str) -> str:
    """`models/<model>/metadata.json`: architecture, config and metrics beside the weights."""
    return model_key(model, METADATA_FILE)


def checkpoints_prefix(model: str) -> str:
    """`models/<model>/checkpoints/`: list it to find the checkpoint to resume from."""
    return f"{model_prefix(model)}{CHECKPOINTS_FOLDER}/"


def checkpoint_key(model: str, epoch: int) -> str:
    """`models/<model>/checkpoints/epoch-NNNN.pt`; zero-padded so keys sort by epoch."""
    return f"{checkpoints_prefix(model)}epoch-{_non_negative(epoch, 'epoch'):04d}.pt"


def parse_checkpoint_key(key: str) -> tuple[str, int]:
    """`(model, epoch)` of a key made by `checkpoint_key`; InvalidInput otherwise."""
    parts = key.split("/") if isinstance(key, str) else []
    match = _CHECKPOINT.fullmatch(parts[3]) if len(parts) == 4 else None
    if match is None or parts[0] != MODELS_ROOT or parts[2] != CHECKPOINTS_FOLDER:
        raise InvalidInput(
            f"{key!r} is not a checkpoint key (models/<model>/checkpoints/epoch-NNNN.pt)"
        )
    return _component(parts[1], "model"), int(match.group(1))


# -- exports ---------------------------------------------------------------------------------


def export_prefix(dataset: str, version: int) -> str:
    """`exports/<dataset>/v<version>/`: one exported dataset version."""
    return f"{EXPORTS_ROOT}/{_component(dataset, 'dataset')}/v{_version(version)}/"


def export_key(dataset: str, version: int, relpath: str) -> str:
    """Key of one exported file; `relpath` may hold `/` (e.g. `train/1a2b/0_1a2b_RGB.png`)."""
    return f"{export_prefix(dataset, version)}{_relpath(relpath, 'export path')}"


# -- reading keys back ------------------------------------------------------------------------


def owner_of(key: str) -> KeyOwner | None:
    """What owns `key`: None outside the `MANAGED_ROOTS` (or for a key too short to have an
    owner, e.g. a stray `models/x`); see `KeyOwner`."""
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) < 3 or parts[0] not in MANAGED_ROOTS or not _COMPONENT.fullmatch(parts[1]):
        return None
    root, name = parts[0], parts[1]
    if root == DATASETS_ROOT:
        return KeyOwner("dataset", name)
    if root == META_ROOT:
        return KeyOwner("meta", name)
    if root == MODELS_ROOT:
        return KeyOwner("model", name)
    match = _VERSION.fullmatch(parts[2])
    version = int(match.group(1)) if match and len(parts) > 3 else None
    return KeyOwner("cache" if root == CACHE_ROOT else "export", name, version)


# -- validation ------------------------------------------------------------------------------


def _component(value: str, what: str) -> str:
    if not isinstance(value, str) or not _COMPONENT.fullmatch(value):
        raise InvalidInput(
            f"{what} name {value!r} must be 1-128 characters of letters, digits, '.', '_' "
            "or '-', not starting with '.'"
        )
    return value


def _relpath(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    for segment in value.split("/"):
        if not _COMPONENT.fullmatch(segment):
            raise InvalidInput(
                f"{what} {value!r}: each '/'-separated part must be 1-128 characters of "
                "letters, digits, '.', '_' or '-', not starting with '.'"
            )
    return value


def _version(version: int) -> int:
    return _non_negative(version, "dataset version")


def _non_negative(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer, got {value!r}")
    return value
