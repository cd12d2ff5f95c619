"""The training cache: every image decoded and resized ONCE, stored as shards in the object store.

The reference GG-CNN loaders decode each 1024² PNG/TIFF and resize it on every epoch;
over 100 epochs that is most of the training time. Here a dataset version is decoded
once into network-size arrays in compact dtypes and written as `.npz` shards of
`shard_size` images under `keys.cache_prefix(dataset, version)`:

    cache/<dataset>/v<version>/<channels>-<size>/shard-00000-<digest>.npz
    cache/<dataset>/v<version>/<channels>-<size>/index.json

A shard holds, for its n images (sorted by object, then image id in `splits.id_order`):

- `depth` (n, 1, S, S) float16: the normalised depth plane of `imaging.network_input`
  (values in [-1, 1], so float16 keeps ~1e-3 relative precision, 2 bytes a pixel);
- `rgb` (n, 3, S, S) uint8: the letterboxed RGB before normalisation (normalised on read,
  exactly as `network_input` does, so 1 byte a pixel);
- `grasps` (M, 5) float64 in network pixels, `offsets` (n + 1,) int64: image i owns rows
  `offsets[i]:offsets[i+1]` (variable-length labels without padding);
- `sizes` (n, 2) int64: the original (width, height), to map grasps back to image pixels;
- `image_ids` (n,) int64, `object_ids` (n,) str.

Idempotence: a shard's name ends with a digest of its image ids, channels and size, so an
existing key with that name is exactly the shard the plan asks for (store writes are
atomic per key: a present object is a complete one). The index is written last; an index
that lists every requested image means the cache is complete and is reused as is. After an
interrupted build the shards already written are kept and only the missing ones are built.

Sources are a plain sequence of `SourceImage` (ids, lazy loaders, grasps in image pixels):
`jacquard_images` adapts a Jacquard folder, `db_images` a dataset version of the database
with its files in the object store. Image ids are ints, the database's own ids.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from regrasp.grasp.imaging import CHANNELS, Letterbox, decode_depth, decode_rgb, network_input
from regrasp.grasp.maps import INPUT_SIZE
from regrasp.grasp.rectangles import as_grasps
from regrasp.learn.training.splits import id_order
from regrasp.platform.errors import InvalidInput, NotFound, ObjectNotFound, StorageError
from regrasp.platform.store import keys

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from regrasp.data.formats.jacquard import JacquardDataset
    from regrasp.platform.store.objects import ObjectStore

#: Images per shard unless told otherwise: 256 × 300² float16 depth is about 46 MB.
SHARD_SIZE = 256
#: Bumped when the shard layout changes, so old shards are never read as new ones
#: (2: image ids are int64, they were strings).
CACHE_FORMAT = 2
INDEX_FILE = "index.json"

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class SourceImage:
    """One image to cache: its ids and lazy loaders (nothing is read until cached).

    `load_depth()` gives (H, W) float32 metres, `load_rgb()` (H, W, 3) uint8, and
    `load_grasps()` (N, 5) grasps in image pixels. A loader may be None when the channel
    is not needed (e.g. no RGB for a depth-only cache).
    """

    image_id: int
    object_id: str
    load_grasps: Callable[[], np.ndarray]
    load_depth: Callable[[], np.ndarray] | None = None
    load_rgb: Callable[[], np.ndarray] | None = None


@dataclass(frozen=True)
class ShardInfo:
    """One shard of an index: its object key and the image ids it holds, in row order."""

    key: str
    image_ids: tuple[int, ...]


@dataclass(frozen=True)
class CacheIndex:
    """A complete cache: where its shards are and which images each holds."""

    dataset: str
    version: int
    channels: str
    size: int
    shards: tuple[ShardInfo, ...]

    @property
    def image_ids(self) -> tuple[int, ...]:
        """Every cached image id, in shard order."""
        return tuple(i for shard in self.shards for i in shard.image_ids)

    def locations(self) -> dict[int, tuple[int, int]]:
        """image id → (shard number, row in the shard)."""
        return {
            image: (s, row)
            for s, shard in enumerate(self.shards)
            for row, image in enumerate(shard.image_ids)
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": CACHE_FORMAT,
                "dataset": self.dataset,
                "version": self.version,
                "channels": self.channels,
                "size": self.size,
                "shards": [{"key": s.key, "image_ids": list(s.image_ids)} for s in self.shards],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> CacheIndex:
        data = json.loads(text)
        if data.get("format") != CACHE_FORMAT:
            raise InvalidInput(f"cache index format {data.get('format')!r} is not {CACHE_FORMAT}")
        return cls(
            dataset=data["dataset"],
            version=int(data["version"]),
            channels=data["channels"],
            size=int(data["size"]),
            shards=tuple(
                ShardInfo(s["key"], tuple(int(i) for i in s["image_ids"])) for s in data["shards"]
            ),
        )


@dataclass(frozen=True)
class Shard:
    """The arrays of one shard (see the module docstring for shapes and dtypes)."""

    image_ids: np.ndarray
    object_ids: np.ndarray
    sizes: np.ndarray
    grasps: np.ndarray
    offsets: np.ndarray
    depth: np.ndarray | None
    rgb: np.ndarray | None

    def __len__(self) -> int:
        return len(self.image_ids)

    def inputs(self, row: int) -> np.ndarray:
        """(C, S, S) float32 network input of image `row`, as `imaging.network_input` gives."""
        planes = []
        if self.depth is not None:
            planes.append(self.depth[row].astype(np.float32))
        if self.rgb is not None:
            width, height = (int(v) for v in self.sizes[row])
            planes.append(_normalise_rgb(self.rgb[row], Letterbox(width, height, self.size)))
        return np.concatenate(planes, axis=0)

    def network_grasps(self, row: int) -> np.ndarray:
        """(N, 5) grasps of image `row` in network pixels."""
        return self.grasps[self.offsets[row] : self.offsets[row + 1]]

    def letterbox(self, row: int) -> Letterbox:
        """How image `row` maps onto the network input (to bring grasps back to image px)."""
        width, height = (int(v) for v in self.sizes[row])
        return Letterbox(width, height, self.size)

    @property
    def size(self) -> int:
        plane = self.depth if self.depth is not None else self.rgb
        assert plane is not None  # a shard always holds at least one kind of plane
        return int(plane.shape[-1])


def build_cache(
    store: ObjectStore,
    images: Sequence[SourceImage],
    *,
    dataset: str,
    version: int,
    channels: Literal["depth", "rgb", "rgbd"] = "depth",
    size: int = INPUT_SIZE,
    shard_size: int = SHARD_SIZE,
    workers: int = 2,
    progress: ProgressFn | None = None,
) -> CacheIndex:
    """Decode, resize and store `images` once; return the index of the (reused) cache.

    An existing index under the same dataset, version, channels and size that already
    lists every requested image is returned without reading anything else. Otherwise the
    images are planned into shards (sorted by object id, then image id), shards already in
    the store are kept and the others are built by `workers` threads (OpenCV decoding
    releases the GIL), then the index is written. `progress(done, total)` counts images.
    """
    _check_cache_args(channels, size, shard_size, workers)
    by_id = {image.image_id: image for image in images}
    if len(by_id) != len(images):
        raise InvalidInput("image ids of a cache must be unique")
    if not images:
        raise InvalidInput("a cache needs at least one image")
    folder = _folder_prefix(dataset, version, channels, size)
    existing = _read_index(store, dataset, version, channels, size)
    if existing is not None and set(by_id) <= set(existing.image_ids):
        present = {info.key for info in store.list(folder)}
        if all(shard.key in present for shard in existing.shards):
            return existing

    ordered = sorted(images, key=lambda im: (im.object_id, id_order(im.image_id)))
    chunks = [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]
    shards = tuple(
        ShardInfo(
            _shard_key(dataset, version, channels, size, n, [im.image_id for im in chunk]),
            tuple(im.image_id for im in chunk),
        )
        for n, chunk in enumerate(chunks)
    )
    present = {info.key for info in store.list(folder)}
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for info, chunk in zip(shards, chunks, strict=True):
            if info.key not in present:
                encoded = list(
                    pool.map(lambda im: encode_image(im, channels=channels, size=size), chunk)
                )
                store.put_bytes(info.key, _shard_bytes(chunk, encoded, channels))
            done += len(chunk)
            if progress is not None:
                progress(done, len(ordered))
    index = CacheIndex(dataset, version, channels, size, shards)
    store.put_bytes(_index_key(dataset, version, channels, size), index.to_json().encode())
    return index


def open_cache(
    store: ObjectStore, *, dataset: str, version: int, channels: str, size: int = INPUT_SIZE
) -> CacheIndex:
    """The index of a complete cache; NotFound when none was built."""
    _check_cache_args(channels, size, SHARD_SIZE, 1)
    index = _read_index(store, dataset, version, channels, size)
    if index is None:
        raise NotFound(f"no {channels}-{size} training cache for {dataset} v{version}")
    return index


def read_shard(store: ObjectStore, key: str) -> Shard:
    """Load one shard from the store (StorageError naming the key if it is unreadable)."""
    data = store.get_bytes(key)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return Shard(
                image_ids=z["image_ids"],
                object_ids=z["object_ids"],
                sizes=z["sizes"],
                grasps=z["grasps"],
                offsets=z["offsets"],
                depth=z["depth"] if "depth" in z.files else None,
                rgb=z["rgb"] if "rgb" in z.files else None,
            )
    except (ValueError, KeyError, OSError) as exc:
        raise StorageError(f"cache shard {key} is unreadable: {exc}") from exc


def iter_shards(store: ObjectStore, index: CacheIndex) -> Iterator[Shard]:
    """Every shard of a cache, loaded one at a time (for checks and exports)."""
    for shard in index.shards:
        yield read_shard(store, shard.key)


def encode_image(image: SourceImage, *, channels: str, size: int) -> dict[str, np.ndarray]:
    """Decode one image into what a shard stores for it (see the module docstring)."""
    need_depth, need_rgb = channels in ("depth", "rgbd"), channels in ("rgb", "rgbd")
    depth = _load(image, "depth") if need_depth else None
    rgb = _load(image, "rgb") if need_rgb else None
    reference = depth if depth is not None else rgb
    box = Letterbox.for_image(reference, size=size)
    out: dict[str, np.ndarray] = {
        "size": np.array([box.width, box.height], dtype=np.int64),
        "grasps": box.to_network(as_grasps(image.load_grasps())),
    }
    if depth is not None:
        plane = network_input(depth, None, size=size, channels="depth")
        out["depth"] = plane.astype(np.float16)
    if rgb is not None:
        out["rgb"] = np.moveaxis(box.apply(rgb), 2, 0).copy()
    return out


def jacquard_images(
    dataset: JacquardDataset, *, depth: Literal["perfect", "stereo"] = "perfect"
) -> list[SourceImage]:
    """Adapt a scanned Jacquard folder: object id = folder name, images numbered in name order.

    A folder has no database ids, so its images are numbered from 10^d (d the digits of
    their count): all ids have as many digits, so `id_order` sorts them as their file
    names sort and a cache of the folder is laid out as the names are.
    """
    named = sorted(dataset, key=lambda image: image.name)
    first = 10 ** len(str(len(named)))
    return [
        SourceImage(
            image_id=first + number,
            object_id=image.object_id,
            load_grasps=image.load_grasps,
            load_depth=lambda image=image: image.load_depth(depth),
            load_rgb=image.load_rgb,
        )
        for number, image in enumerate(named)
    ]


def db_images(
    session: Session,
    store: ObjectStore,
    *,
    dataset_id: int,
    version: int,
    depth: Literal["depth", "stereo"] = "depth",
) -> list[SourceImage]:
    """Adapt one dataset version of the database: images present at `version`, their labels
    at `version` (`versions.labels_at`) and their files read from `store` when cached.

    Image ids are the database ids, object ids the object names.
    """
    from regrasp.data import versions
    from regrasp.platform.store.db.tables import DatasetObject, Image

    labels = versions.labels_at(session, dataset_id, version)
    stmt = (
        versions.select_images_at(dataset_id, version)
        .add_columns(DatasetObject.name)
        .join(DatasetObject, DatasetObject.id == Image.object_id)
        .order_by(Image.id)
    )
    rows = session.execute(stmt).all()
    starts = np.searchsorted(labels.image_ids, [row[0].id for row in rows], side="left")
    ends = np.searchsorted(labels.image_ids, [row[0].id for row in rows], side="right")
    out = []
    for (image, object_name), lo, hi in zip(rows, starts, ends, strict=True):
        depth_key = image.depth_key if depth == "depth" else image.stereo_key
        grasps = labels.grasps[lo:hi].copy()
        out.append(
            SourceImage(
                image_id=int(image.id),
                object_id=str(object_name),
                load_grasps=lambda g=grasps: g,
                load_depth=_store_loader(store, depth_key, decode_depth),
                load_rgb=_store_loader(store, image.rgb_key, decode_rgb),
            )
        )
    return out


def _store_loader(
    store: ObjectStore, key: str | None, decode: Callable[[bytes], np.ndarray]
) -> Callable[[], np.ndarray] | None:
    if key is None:
        return None
    return lambda: decode(store.get_bytes(key))


def _load(image: SourceImage, kind: str) -> np.ndarray:
    loader = image.load_depth if kind == "depth" else image.load_rgb
    if loader is None:
        raise InvalidInput(f"image {image.image_id} has no {kind} image to cache")
    return loader()


def _shard_bytes(
    images: Sequence[SourceImage], encoded: list[dict[str, np.ndarray]], channels: str
) -> bytes:
    counts = [len(e["grasps"]) for e in encoded]
    arrays: dict[str, Any] = {
        "image_ids": np.array([im.image_id for im in images], dtype=np.int64),
        "object_ids": np.array([im.object_id for im in images], dtype=str),
        "sizes": np.stack([e["size"] for e in encoded]),
        "grasps": np.concatenate([e["grasps"] for e in encoded]).reshape(-1, 5),
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    }
    if channels in ("depth", "rgbd"):
        arrays["depth"] = np.stack([e["depth"] for e in encoded])
    if channels in ("rgb", "rgbd"):
        arrays["rgb"] = np.stack([e["rgb"] for e in encoded])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _normalise_rgb(rgb: np.ndarray, box: Letterbox) -> np.ndarray:
    """(3, S, S) uint8 letterboxed → (3, S, S) float32 as `imaging.normalize_rgb` + padding."""
    (w, h), (left, top) = box.resized, box.offset
    region = rgb[:, top : top + h, left : left + w].astype(np.float32) / np.float32(255.0)
    out = np.zeros(rgb.shape, dtype=np.float32)
    out[:, top : top + h, left : left + w] = region - region.mean(dtype=np.float64).astype(
        np.float32
    )
    return out


def _read_index(
    store: ObjectStore, dataset: str, version: int, channels: str, size: int
) -> CacheIndex | None:
    try:
        text = store.get_bytes(_index_key(dataset, version, channels, size))
    except ObjectNotFound:
        return None
    try:
        return CacheIndex.from_json(text)
    except (InvalidInput, ValueError, KeyError, TypeError):
        return None  # an index of another format or a broken one: rebuild


def _folder(channels: str, size: int) -> str:
    return f"{channels}-{size}"


def _folder_prefix(dataset: str, version: int, channels: str, size: int) -> str:
    return keys.cache_shard_key(dataset, version, _folder(channels, size)) + "/"


def _index_key(dataset: str, version: int, channels: str, size: int) -> str:
    return keys.cache_shard_key(dataset, version, f"{_folder(channels, size)}/{INDEX_FILE}")


def _shard_key(
    dataset: str, version: int, channels: str, size: int, number: int, image_ids: list[int]
) -> str:
    digest = hashlib.sha256(
        json.dumps([CACHE_FORMAT, channels, size, image_ids]).encode()
    ).hexdigest()[:12]
    name = f"{_folder(channels, size)}/shard-{number:05d}-{digest}.npz"
    return keys.cache_shard_key(dataset, version, name)


def _check_cache_args(channels: str, size: int, shard_size: int, workers: int) -> None:
    if channels not in CHANNELS:
        raise InvalidInput(f"channels must be one of {', '.join(CHANNELS)}; got {channels!r}")
    for name, value in (("size", size), ("shard_size", shard_size), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
