"""`s3://bucket[/prefix]` object store over the S3 API (MinIO in deployment), via `minio`.

The SHA-256 of each object is recorded as user metadata (`x-amz-meta-sha256`) so `stat`
returns it without reading the content. Bytes and files are hashed before the upload and
carry it from the first moment. Streams are uploaded as they are read, part by part
(multipart upload, `part_size` bytes a part, a few parts in memory at most), so their hash
is known only at the end: the store then stamps it on with a server-side copy onto the
same key (a metadata-only update on MinIO), guarded by the upload's ETag so it never
stamps someone else's newer content. Until that copy lands, `stat` reports `sha256=None`;
readers never see a partial object, as S3 publishes a multipart upload only when complete.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from urllib3.util import Retry, Timeout

from regrasp.platform.errors import (
    InvalidInput,
    ObjectAccessDenied,
    ObjectNotFound,
    RegraspError,
    StorageError,
)
from regrasp.platform.store.objects.base import CHUNK_SIZE, ObjectInfo, ObjectStore, sha256_of_file

#: User-metadata name of the content checksum (sent as `x-amz-meta-sha256`).
SHA256_HEADER = "x-amz-meta-sha256"

MIB = 1024 * 1024
#: Multipart part size: the memory one streamed upload holds at a time. S3's minimum is 5 MiB.
DEFAULT_PART_SIZE = 8 * MIB
_MAX_PARTS = 10_000  # S3's limit on parts per upload

_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NoSuchVersion"}
_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
}
_BAD_KEYS = {"InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3ObjectStore(ObjectStore):
    """Objects in one S3 bucket, optionally under a key prefix (`s3://bucket/prefix`)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        secure: bool = False,
        region: str = "us-east-1",
        prefix: str = "",
        part_size: int = DEFAULT_PART_SIZE,
        parallel_uploads: int = 1,
    ) -> None:
        """`endpoint` is `host:port`; no credentials means anonymous requests.

        `parallel_uploads` parts are uploaded at once. A streamed upload holds about
        `(parallel_uploads + 2) * part_size` bytes (minio reads one part ahead and copies it
        once to find the end of a stream of unknown length): 24 MiB with the defaults.
        """
        if part_size < 5 * MIB:
            raise InvalidInput(f"S3 part_size must be at least 5 MiB, got {part_size} bytes")
        if parallel_uploads < 1:
            raise InvalidInput(f"parallel_uploads must be >= 1, got {parallel_uploads}")
        self.bucket = bucket
        self.endpoint = endpoint
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._part_size = part_size
        self._parallel_uploads = parallel_uploads
        # Our own pool: fewer retries than minio's default, so an unreachable endpoint
        # fails in about a second instead of hanging on backoff.
        http = urllib3.PoolManager(
            timeout=Timeout(connect=10, read=300),
            maxsize=max(10, parallel_uploads),
            retries=Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=access_key or None,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=http,
            )
        except ValueError as exc:
            raise InvalidInput(f"S3 store {self.url} at {endpoint!r}: {exc}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet (safe to race with another process)."""
        with self._errors(f"bucket {self.bucket}"):
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code != "BucketAlreadyOwnedByYou":
                    raise

    # -- backend hooks -------------------------------------------------------------------

    def _put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        sha256 = hashlib.sha256(data).hexdigest()
        with self._errors(key):
            result = self._client.put_object(
                self.bucket,
                self._name(key),
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={SHA256_HEADER: sha256},
            )
        return _written(key, len(data), sha256, result.etag, content_type)

    def _put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        sha256 = sha256_of_file(path)
        size = path.stat().st_size
        with self._errors(key):
            result = self._client.fput_object(
                self.bucket,
                self._name(key),
                str(path),
                content_type=content_type,
                metadata={SHA256_HEADER: sha256},
                part_size=self._part_size_for(size),
                num_parallel_uploads=self._parallel_uploads,
            )
        return _written(key, size, sha256, result.etag, content_type)

    def _put_stream(
        self, key: str, stream: BinaryIO, length: int | None, content_type: str
    ) -> ObjectInfo:
        reader = _HashingReader(stream, limit=length)
        head = reader.read(self._part_size + 1)
        if length is not None and len(head) < min(length, self._part_size + 1):
            raise InvalidInput(f"put_stream({key!r}): stream ended before {length} bytes")
        if len(head) <= self._part_size:  # small enough for one request, hash already known
            return self._put_bytes(key, head, content_type)
        name = self._name(key)
        body = _Prepended(head, reader)
        del head  # the body drops it once read, so finished parts are freed
        try:
            with self._errors(key):
                result = self._client.put_object(
                    self.bucket,
                    name,
                    body,
                    -1 if length is None else length,
                    content_type=content_type,
                    part_size=self._part_size_for(length),
                    num_parallel_uploads=self._parallel_uploads,
                )
        except OSError:  # the caller's stream failed, or minio found it short (both aborted)
            if length is not None and reader.size < length and not reader.failed:
                raise InvalidInput(
                    f"put_stream({key!r}): stream ended {length - reader.size} bytes short"
                ) from None
            raise
        sha256 = reader.hexdigest()
        with self._errors(key):
            try:
                stamped = self._client.copy_object(
                    self.bucket,
                    name,
                    CopySource(self.bucket, name, match_etag=result.etag),
                    metadata={"Content-Type": content_type, SHA256_HEADER: sha256},
                    metadata_directive=REPLACE,
                )
            except S3Error as exc:
                if exc.code != "PreconditionFailed":
                    raise
                stamped = result  # overwritten meanwhile: the newer put records its own hash
        return _written(key, reader.size, sha256, stamped.etag, content_type)

    @contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        with self._errors(key):
            response = self._client.get_object(self.bucket, self._name(key))
        try:
            yield io.BufferedReader(_ResponseReader(response, self, key), CHUNK_SIZE)
        finally:
            response.close()
            response.release_conn()

    def _stat(self, key: str) -> ObjectInfo:
        with self._errors(key):
            obj = self._client.stat_object(self.bucket, self._name(key))
        return ObjectInfo(
            key=key,
            size=obj.size or 0,
            sha256=(obj.metadata or {}).get(SHA256_HEADER),
            etag=obj.etag,
            last_modified=obj.last_modified,
            content_type=obj.content_type,
        )

    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        strip = len(self.prefix)
        with self._errors(prefix or "/"):
            for obj in self._client.list_objects(
                self.bucket, prefix=self.prefix + prefix, recursive=recursive
            ):
                if obj.is_dir or obj.object_name is None:
                    continue  # a common prefix ("sub-folder") of a non-recursive listing
                yield ObjectInfo(
                    key=obj.object_name[strip:],
                    size=obj.size or 0,
                    etag=obj.etag,
                    last_modified=obj.last_modified,
                )

    def _delete(self, key: str) -> None:
        with self._errors(key):
            self._client.remove_object(self.bucket, self._name(key))

    def _delete_prefix(self, prefix: str) -> int:
        names = [self._name(info.key) for info in self._list(prefix, True)]
        with self._errors(prefix):
            # remove_objects batches 1000 keys a request; its errors arrive as we iterate.
            errors = list(
                self._client.remove_objects(self.bucket, (DeleteObject(n) for n in names))
            )
        if errors:
            first = errors[0]
            raise StorageError(
                f"S3 store {self.url}: could not delete {len(errors)} of {len(names)} objects "
                f"under {prefix!r}, e.g. {first.name}: {first.code} {first.message}"
            )
        return len(names)

    def _presigned_get_url(self, key: str, expires: timedelta) -> str | None:
        with self._errors(key):
            return self._client.presigned_get_object(self.bucket, self._name(key), expires=expires)

    # -- internals -----------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self.prefix + key

    def _part_size_for(self, length: int | None) -> int:
        """Our part size, grown in whole MiB where a known length needs more than 10,000."""
        if length is None:
            return self._part_size
        needed = math.ceil(length / _MAX_PARTS / MIB) * MIB
        return max(self._part_size, needed)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Map minio/urllib3 failures about `key` to the store's typed errors."""
        try:
            yield
        except RegraspError:
            raise
        except S3Error as exc:
            raise self._s3_error(key, exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise StorageError(
                f"S3 store {self.url} at {self.endpoint} failed on {key}: {exc}"
            ) from exc

    def _s3_error(self, key: str, exc: S3Error) -> RegraspError:
        if exc.code in _NOT_FOUND:
            return ObjectNotFound(key, f"object not found: {key} (in {self.url})")
        if exc.code in _DENIED:
            hint = "; check the S3 access and secret keys" if exc.code in _BAD_KEYS else ""
            return ObjectAccessDenied(
                key, f"access denied to object: {key} (in {self.url}: {exc.code}{hint})"
            )
        if exc.code == "NoSuchBucket":
            return StorageError(
                f"S3 store {self.url}: bucket {self.bucket!r} does not exist at {self.endpoint} "
                f"(needed for {key}); create it or open the store with create_bucket=True"
            )
        return StorageError(f"S3 store {self.url} failed on {key}: {exc.code}: {exc.message}")


class _HashingReader:
    """Reads a stream through SHA-256, returning full chunks (minio concatenates short reads
    with `+=`, which would copy a part over and over), stopping after `limit` bytes."""

    def __init__(self, stream: BinaryIO, *, limit: int | None) -> None:
        self._stream = stream
        self._remaining = limit
        self._digest = hashlib.sha256()
        self.size = 0
        self.failed = False  # the source stream raised: its error, not ours

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._remaining if self._remaining is not None else 1 << 62
        if self._remaining is not None:
            n = min(n, self._remaining)
        # BytesIO hands its buffer over without a copy, so a part exists once, not twice.
        buffer = io.BytesIO()
        while buffer.tell() < n:
            try:
                piece = self._stream.read(n - buffer.tell())
            except BaseException:
                self.failed = True
                raise
            if not piece:
                break
            buffer.write(piece)
            del piece
        data = buffer.getvalue()
        del buffer
        self._digest.update(data)
        self.size += len(data)
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _Prepended:
    """`head` followed by the rest of `reader`: the first part was read to see the size."""

    def __init__(self, head: bytes, reader: _HashingReader) -> None:
        self._head = head
        self._reader = reader

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0 or n >= len(self._head):
                data, self._head = self._head, b""
            else:
                data, self._head = self._head[:n], self._head[n:]
            return data
        return self._reader.read(n)


class _ResponseReader(io.RawIOBase):
    """The body of a GET as a raw stream whose network failures become StorageError."""

    def __init__(self, response: urllib3.BaseHTTPResponse, store: S3ObjectStore, key: str):
        self._response = response
        self._store = store
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        with self._store._errors(self._key):
            return self._response.readinto(buffer)

    def readall(self) -> bytes:
        with self._store._errors(self._key):
            return self._response.read()


def _written(key: str, size: int, sha256: str, etag: str | None, content_type: str) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, sha256=sha256, etag=etag, content_type=content_type)
