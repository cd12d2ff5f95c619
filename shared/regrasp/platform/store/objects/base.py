"""The object-store contract every backend (`file://`, `s3://`) fulfils, and its key rules.

Images, training caches, model weights and exports live in an object store addressed by
`/`-separated keys (built only by `regrasp.platform.store.keys`). `ObjectStore` owns the public
methods: it validates every key and prefix here, in one place, then hands the work to a
backend's `_`-prefixed hooks, so no backend can forget a check. Backends map their own
failures to `ObjectNotFound` / `ObjectAccessDenied` (both name the key) and everything
else to `StorageError` naming the key.

Every put records the SHA-256 of the content (hex) so callers can verify what they read and
the database can store it beside the key. Listings do not carry it (neither S3 listings nor
a folder walk have it for free): `stat` does.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from regrasp.platform.errors import InvalidInput, ObjectNotFound

#: Bytes read from a stream at a time where nothing else sets the size (hashing, copies).
CHUNK_SIZE = 1024 * 1024

#: S3's limit on key length, applied to both backends so a key valid on one is valid on both.
MAX_KEY_BYTES = 1024

DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: Python's built-in table only, not the machine's /etc/mime.types, so every host agrees
#: (some map `.pt`, our weights, to "application/vnd.snesdev-page-table").
_MIME_TYPES = mimetypes.MimeTypes()

#: Default lifetime of a presigned URL.
DEFAULT_PRESIGN_EXPIRY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the store knows about one object.

    `sha256` (hex of the content) and `content_type` are None in listings, and `sha256` is
    None for objects written by other tools; `stat` gives both where they were recorded.
    `etag` is opaque: it changes whenever the object is rewritten, compare it, never parse it.
    `last_modified` may be None in what a put returns (S3 does not report it there).
    """

    key: str
    size: int  # bytes
    sha256: str | None = None
    etag: str | None = None
    last_modified: datetime | None = None  # timezone-aware, UTC
    content_type: str | None = None


class ObjectStore(ABC):
    """A flat namespace of immutable-per-write blobs under `/`-separated keys.

    Writes are atomic per key: readers see the old content or the new, never a mix. Keys
    are validated by `validate_key`; a bad key raises `InvalidInput` before any I/O.
    """

    #: The URL the store was opened from (`file:///...`, `s3://bucket/prefix`), for messages.
    url: str

    # -- writing -------------------------------------------------------------------------

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None, durable: bool = True
    ) -> ObjectInfo:
        """Store `data` under `key`, replacing any previous object.

        `durable=False` lets the store return before the bytes are on stable storage (the
        file store skips its per-object fsync); `sync()` later makes every such put durable
        at once. A bulk writer (the importer) syncs before it records the keys anywhere.
        """
        key = validate_key(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"put_bytes({key!r}) takes bytes, got {type(data).__name__}")
        content_type = content_type or guess_content_type(key)
        if durable:
            return self._put_bytes(key, bytes(data), content_type)
        return self._put_bytes_deferred(key, bytes(data), content_type)

    def sync(self) -> None:
        """Make every object put so far durable (see `put_bytes(durable=False)`)."""
        self._sync()

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        *,
        length: int | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        """Store everything `stream.read()` yields, in bounded memory, under `key`.

        `length` (bytes) is optional; when given, a stream that ends early is an error and
        nothing is stored. The stream is read in chunks and never held whole, so objects of
        any size (training caches, checkpoints) pass through a few MiB of memory.
        """
        key = validate_key(key)
        if not callable(getattr(stream, "read", None)):
            raise InvalidInput(f"put_stream({key!r}) needs a readable binary stream")
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, int) or length < 0
        ):
            raise InvalidInput(f"put_stream({key!r}): length must be >= 0, got {length!r}")
        return self._put_stream(key, stream, length, content_type or guess_content_type(key))

    def put_file(
        self, key: str, path: str | os.PathLike[str], *, content_type: str | None = None
    ) -> ObjectInfo:
        """Store the local file at `path` under `key`."""
        key = validate_key(key)
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"put_file({key!r}): {path} is not a readable file")
        return self._put_file(key, path, content_type or guess_content_type(key))

    # -- reading -------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        """The whole content of `key` (for small objects; stream big ones with `open`)."""
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A context manager yielding a readable binary stream over `key`'s content."""
        return self._open(validate_key(key))

    def get_file(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        """Download `key` to `path` atomically (a temp file beside it, then a rename).

        Parent folders are created. Returns the object's info as stored (`stat`).
        """
        key = validate_key(key)
        path = Path(path)
        info = self.stat(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, self.open(key) as src:
                while chunk := src.read(CHUNK_SIZE):
                    out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return info

    def exists(self, key: str) -> bool:
        """Whether an object is stored under exactly `key` (a "folder" is not an object)."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        """Size, checksum, etag, time and content type of `key`; ObjectNotFound if absent."""
        return self._stat(validate_key(key))

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` (plain string prefix, as in S3), by key.

        `recursive=False` keeps only keys with no `/` after the prefix: the objects "in" the
        folder, not in its sub-folders (which are not listed). Keys come sorted by their
        UTF-8 bytes; `sha256` and `content_type` are None here (use `stat`).
        """
        return self._list(validate_prefix(prefix), recursive)

    # -- deleting ------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove `key`; removing an absent key is not an error (deletes are idempotent)."""
        self._delete(validate_key(key))

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under the folder `prefix`; returns how many were removed.

        The prefix must end with `/` so that removing `cache/d/v1/` can never take
        `cache/d/v10/...` with it.
        """
        prefix = validate_prefix(prefix)
        if not prefix.endswith("/"):
            raise InvalidInput(
                f"delete_prefix needs a folder prefix ending with '/', got {prefix!r}"
            )
        return self._delete_prefix(prefix)

    # -- sharing -------------------------------------------------------------------------

    def presigned_get_url(
        self, key: str, *, expires: timedelta = DEFAULT_PRESIGN_EXPIRY
    ) -> str | None:
        """A URL anyone can GET `key` from until `expires` passes, or None if unsupported.

        S3 signs a real URL (without checking that the key exists). The file store returns
        None: a path on this machine is no use to a browser elsewhere, so the caller serves
        the bytes itself (`open`). Expiry must be between one second and seven days.
        """
        key = validate_key(key)
        if not timedelta(seconds=1) <= expires <= timedelta(days=7):
            raise InvalidInput(f"presigned URL expiry must be 1 s .. 7 days, got {expires}")
        return self._presigned_get_url(key, expires)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- backend hooks: keys and prefixes arrive validated --------------------------------

    @abstractmethod
    def _put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo: ...

    def _put_bytes_deferred(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        """A put that may skip flushing to stable storage; by default a normal put."""
        return self._put_bytes(key, data, content_type)

    def _sync(self) -> None:
        """Flush deferred puts; nothing to do where every put is durable (S3)."""
        return None

    @abstractmethod
    def _put_stream(
        self, key: str, stream: BinaryIO, length: int | None, content_type: str
    ) -> ObjectInfo: ...

    def _put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        with path.open("rb") as stream:
            return self._put_stream(key, stream, path.stat().st_size, content_type)

    @abstractmethod
    def _open(self, key: str) -> AbstractContextManager[BinaryIO]: ...

    @abstractmethod
    def _stat(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    def _delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self._list(prefix, True)]
        for key in keys:
            self._delete(key)
        return len(keys)

    @abstractmethod
    def _presigned_get_url(self, key: str, expires: timedelta) -> str | None: ...


#: Unicode categories Cc (control characters, NUL included) and Cs (lone surrogates),
#: as one regular expression: keys are checked on every store call.
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def validate_key(key: str) -> str:
    """Return `key` if it is a safe object key, else raise InvalidInput saying why.

    A key is 1..1024 UTF-8 bytes of `/`-separated non-empty segments, none of them `.` or
    `..`, with no leading or trailing `/`, no backslash and no control character (NUL
    included). These rules keep a key inside a file store's root and mean the same object
    on S3, so a key valid on one backend is valid on both.
    """
    if not isinstance(key, str):
        raise InvalidInput(f"object key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidInput("object key must not be empty")
    _check_text(key, what="object key")
    if key.startswith("/") or key.endswith("/"):
        raise InvalidInput(f"object key {key!r} must not start or end with '/'")
    _check_segments(key.split("/"), key, what="object key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it can start a valid key (`""` lists everything), else InvalidInput.

    Same rules as `validate_key`, except that it may be empty and may end with `/`.
    """
    if not isinstance(prefix, str):
        raise InvalidInput(f"object prefix must be a string, got {type(prefix).__name__}")
    if not prefix:
        return prefix
    _check_text(prefix, what="object prefix")
    if prefix.startswith("/"):
        raise InvalidInput(f"object prefix {prefix!r} must not start with '/'")
    segments = prefix.split("/")
    if prefix.endswith("/"):
        segments = segments[:-1]
    _check_segments(segments, prefix, what="object prefix")
    return prefix


def guess_content_type(key: str) -> str:
    """MIME type from the key's extension (`image/png`, `image/tiff`, ...), else binary."""
    guessed, _ = _MIME_TYPES.guess_type(key, strict=True)
    return guessed or DEFAULT_CONTENT_TYPE


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a local file, read in chunks (bounded memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _check_text(value: str, *, what: str) -> None:
    if len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidInput(f"{what} is longer than {MAX_KEY_BYTES} bytes: {value[:80]!r}...")
    if "\\" in value:
        raise InvalidInput(f"{what} {value!r} must not contain a backslash")
    if _CONTROL_OR_SURROGATE.search(value):
        raise InvalidInput(f"{what} {value!r} must not contain control characters or NUL")


def _check_segments(segments: list[str], value: str, *, what: str) -> None:
    for segment in segments:
        if segment == "":
            raise InvalidInput(f"{what} {value!r} has an empty segment ('//')")
        if segment in (".", ".."):
            raise InvalidInput(f"{what} {value!r} must not contain '.' or '..' segments")
