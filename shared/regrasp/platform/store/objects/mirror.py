"""Mirror one object store into another: every object with its checksum, identical ones skipped.

The object-store half of a backup (`docs/operations.md`): images, training caches, model
weights and exports copied from the live store into another one — a bucket into a folder
(`s3://` → `file://`) to back up, the folder into an empty bucket to restore, or any other
pair of backends.

For each source object (in key order), its SHA-256 is compared with the destination's:

- equal (and the same size): skipped, nothing is read;
- absent or different: streamed over in bounded memory with its content type; the
  checksum the destination computed while writing must equal the source's, else the
  mirror stops with a `StorageError` naming the key (the source changed during the copy,
  or the transfer corrupted it). Running it again finishes the job.

The source's checksum is the one recorded at put; for an object another tool wrote (no
recorded checksum), it is computed by reading the object. Objects that exist only in the
destination are left alone: a backup mirror never deletes. Because every put is atomic,
an interrupted mirror leaves whole objects only, and a re-run copies just what is missing.
MinIO's own client does the same between buckets (`mc mirror`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from regrasp.platform.errors import InvalidInput, ObjectNotFound, StorageError
from regrasp.platform.store.objects.base import CHUNK_SIZE, ObjectInfo, ObjectStore

__all__ = ["MirrorSummary", "mirror"]


@dataclass(frozen=True)
class MirrorSummary:
    """What `mirror` did: objects copied and skipped (identical), bytes copied."""

    copied: int
    skipped: int
    bytes_copied: int

    @property
    def objects(self) -> int:
        return self.copied + self.skipped


def mirror(
    source: ObjectStore,
    destination: ObjectStore,
    *,
    prefix: str = "",
    workers: int = 4,
    on_object: Callable[[str, bool], None] | None = None,
) -> MirrorSummary:
    """Copy every object of `source` under `prefix` into `destination` (same keys).

    `workers` objects are copied at a time. `on_object(key, copied)` is called once per
    object (from worker threads) — e.g. for progress. Raises InvalidInput when both are
    the same store, StorageError when a copy does not match its source's checksum.
    """
    if workers < 1:
        raise InvalidInput(f"workers must be >= 1, got {workers}")
    if source.url == destination.url:
        raise InvalidInput(f"source and destination are the same store: {source.url}")

    def one(listed: ObjectInfo) -> tuple[bool, int]:
        copied, size = _mirror_one(source, destination, listed.key)
        if on_object is not None:
            on_object(listed.key, copied)
        return copied, size

    with ThreadPoolExecutor(workers, thread_name_prefix="mirror") as pool:
        results = list(pool.map(one, source.list(prefix)))
    copied = [size for was_copied, size in results if was_copied]
    return MirrorSummary(
        copied=len(copied), skipped=len(results) - len(copied), bytes_copied=sum(copied)
    )


def _mirror_one(source: ObjectStore, destination: ObjectStore, key: str) -> tuple[bool, int]:
    """(whether `key` was copied, its size)."""
    info = source.stat(key)
    expected = info.sha256 or _sha256_of(source, key)
    try:
        there = destination.stat(key)
    except ObjectNotFound:
        there = None
    if there is not None and there.size == info.size and there.sha256 == expected:
        return False, info.size
    with source.open(key) as stream:
        written = destination.put_stream(
            key, stream, length=info.size, content_type=info.content_type
        )
    if written.sha256 != expected:
        raise StorageError(
            f"mirror of {key}: the copy's SHA-256 {written.sha256} differs from the source's "
            f"{expected} (changed while copied?); run the mirror again"
        )
    return True, info.size


def _sha256_of(store: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    with store.open(key) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
