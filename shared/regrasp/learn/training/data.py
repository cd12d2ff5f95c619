"""Torch datasets and loaders over the training cache (and, for comparison, the raw files).

`CachedGraspDataset` reads network-size inputs and grasps from cache shards
(`regrasp.learn.training.cache`). Shards are loaded lazily and kept in a small LRU per process,
and `ShardSampler` orders an epoch so that consecutive samples come from the same few
shards (shards shuffled, then images shuffled within groups of `shards_in_memory`
shards): memory stays bounded by a few shards per worker whatever the dataset size, while
every epoch still sees a fresh random order. `DecodedGraspDataset` decodes every sample
from its source files each time, as the reference GG-CNN loaders do; it exists for the
pipeline benchmark and for quick runs without a store.

An item is `(x, target, index)`: x (C, S, S) float32, target (4, S, S) float32 (the
GG-CNN maps painted by `regrasp.grasp.maps.encode`), index the item's position. Training
datasets augment (rotation + zoom, `regrasp.learn.training.augment`) with a generator seeded by
(seed, epoch, index), so a sample's augmentation does not depend on which worker loads it
and a resumed run sees exactly the samples of an uninterrupted one. Validation and test
datasets are built with `augment=None`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from regrasp.grasp.imaging import Letterbox, network_input
from regrasp.grasp.maps import WIDTH_SCALE, encode
from regrasp.learn.training.augment import augment as augment_sample
from regrasp.learn.training.cache import CacheIndex, Shard, SourceImage, read_shard
from regrasp.learn.training.config import AugmentConfig
from regrasp.platform.errors import InvalidInput

if TYPE_CHECKING:
    from regrasp.platform.store.objects import ObjectStore


class GraspDataset(Dataset):
    """What the loop and `evaluate` need of a dataset; subclasses supply `sample`."""

    augment: AugmentConfig | None
    width_scale: float
    seed: int
    epoch: int = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, Letterbox]:
        """(C, S, S) float32 input, (N, 5) grasps in network px, and the image's letterbox."""
        raise NotImplementedError

    def image_id(self, index: int) -> int:
        raise NotImplementedError

    @property
    def shard_of(self) -> np.ndarray:
        """(len,) int: the storage unit of each item, for `ShardSampler` (default: one each)."""
        return np.arange(len(self))

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of `epoch` (call before creating the iterator)."""
        self.epoch = int(epoch)

    def ground_truth(self, index: int) -> np.ndarray:
        """(N, 5) labels of item `index` in image pixels (unaugmented)."""
        _, grasps, box = self.sample(index)
        return box.to_image(grasps)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, grasps, _ = self.sample(index)
        if self.augment is not None and self.augment.enabled:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            x, grasps = augment_sample(x, grasps, rng, self.augment)
        target = encode(grasps, size=x.shape[-1], width_scale=self.width_scale).as_array()
        return torch.from_numpy(x), torch.from_numpy(target), index


class CachedGraspDataset(GraspDataset):
    """Items of a training cache, optionally restricted to `image_ids` (in cache order)."""

    def __init__(
        self,
        store: ObjectStore,
        index: CacheIndex,
        image_ids: Sequence[int] | None = None,
        *,
        augment: AugmentConfig | None = None,
        width_scale: float = WIDTH_SCALE,
        seed: int = 0,
        shards_in_memory: int = 4,
    ) -> None:
        if shards_in_memory < 1:
            raise InvalidInput(f"shards_in_memory must be >= 1, got {shards_in_memory}")
        self.store = store
        self.index = index
        self.augment = augment
        self.width_scale = width_scale
        self.seed = seed
        self.shards_in_memory = shards_in_memory
        where = index.locations()
        wanted = list(where) if image_ids is None else [int(i) for i in image_ids]
        missing = [i for i in wanted if i not in where]
        if missing:
            raise InvalidInput(f"{len(missing)} image(s) are not in the cache, e.g. {missing[:3]}")
        rows = np.array(sorted(where[i] for i in set(wanted)), dtype=np.int64).reshape(-1, 2)
        self._rows = rows
        self._ids = [index.shards[s].image_ids[r] for s, r in rows.tolist()]
        self._loaded: OrderedDict[int, Shard] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def shard_of(self) -> np.ndarray:
        return self._rows[:, 0]

    @property
    def image_ids(self) -> list[int]:
        return list(self._ids)

    def image_id(self, index: int) -> int:
        return self._ids[index]

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, Letterbox]:
        shard_no, row = (int(v) for v in self._rows[index])
        shard = self._shard(shard_no)
        return shard.inputs(row), shard.network_grasps(row), shard.letterbox(row)

    def _shard(self, number: int) -> Shard:
        shard = self._loaded.get(number)
        if shard is None:
            shard = read_shard(self.store, self.index.shards[number].key)
            self._loaded[number] = shard
            while len(self._loaded) > self.shards_in_memory:
                self._loaded.popitem(last=False)
        else:
            self._loaded.move_to_end(number)
        return shard

    def __getstate__(self) -> dict:
        # Worker processes start with an empty shard cache of their own.
        state = self.__dict__.copy()
        state["_loaded"] = OrderedDict()
        return state


class DecodedGraspDataset(GraspDataset):
    """Items decoded from the source files on every access (the reference loaders' way)."""

    def __init__(
        self,
        images: Sequence[SourceImage],
        *,
        channels: str = "depth",
        size: int = 300,
        augment: AugmentConfig | None = None,
        width_scale: float = WIDTH_SCALE,
        seed: int = 0,
    ) -> None:
        self.images = list(images)
        self.channels = channels
        self.size = size
        self.augment = augment
        self.width_scale = width_scale
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> int:
        return self.images[index].image_id

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, Letterbox]:
        image = self.images[index]
        need_depth = self.channels in ("depth", "rgbd")
        need_rgb = self.channels in ("rgb", "rgbd")
        depth = image.load_depth() if need_depth and image.load_depth else None
        rgb = image.load_rgb() if need_rgb and image.load_rgb else None
        x = network_input(depth, rgb, size=self.size, channels=self.channels)  # type: ignore[arg-type]
        box = Letterbox.for_image(depth if depth is not None else rgb, size=self.size)
        return x, box.to_network(image.load_grasps()), box


class ShardSampler(Sampler[int]):
    """An epoch's order that touches few shards at a time; optionally one rank's share.

    With `shuffle`, shards are permuted by (seed, epoch), cut into groups of `group`
    shards, and the items of each group permuted together. For distributed training every
    rank computes the same global order and takes every `world_size`-th item from `rank`
    (padding with the first items so that ranks get equal counts, as torch's
    `DistributedSampler` does). Call `set_epoch` before each epoch.
    """

    def __init__(
        self,
        shard_of: np.ndarray,
        *,
        shuffle: bool = True,
        seed: int = 0,
        group: int = 4,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise InvalidInput(f"rank {rank} is not in a world of {world_size}")
        self.shard_of = np.asarray(shard_of, dtype=np.int64)
        self.shuffle = shuffle
        self.seed = seed
        self.group = max(1, int(group))
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """The global order of this epoch (before the rank's share is taken)."""
        n = len(self.shard_of)
        if not self.shuffle:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, self.epoch])
        shards = rng.permutation(np.unique(self.shard_of))
        parts = []
        for start in range(0, len(shards), self.group):
            members = np.flatnonzero(np.isin(self.shard_of, shards[start : start + self.group]))
            parts.append(rng.permutation(members))
        return np.concatenate(parts) if parts else np.arange(0)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        per_rank = -(-len(order) // self.world_size)
        if len(order) and per_rank * self.world_size > len(order):
            order = np.resize(order, per_rank * self.world_size)
        return iter(order[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return -(-len(self.shard_of) // self.world_size)


def make_loader(
    dataset: GraspDataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    group: int = 4,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over `dataset` with a `ShardSampler` (returned as `loader.sampler`)."""
    sampler = ShardSampler(
        dataset.shard_of,
        shuffle=shuffle,
        seed=seed,
        group=group,
        rank=rank,
        world_size=world_size,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
