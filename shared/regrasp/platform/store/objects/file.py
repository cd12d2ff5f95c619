"""`file://` object store: one file per key under a root folder, for one machine.

Key `a/b/c.png` is the file `<root>/a/b/c.png`, so the store can be browsed and backed up
with ordinary tools. Writes go to a temporary file inside the root (same file system) and
are renamed over the target with `os.replace`, so readers see the old or the new content,
never half of it. Each object's SHA-256 and content type are recorded at put, together
with the file's inode, size and mtime, so `stat` answers without rereading a large file;
a file changed behind the store's back is noticed and rehashed. The record is an extended
attribute of the file itself (`user.regrasp.meta`: no second file per object, which halves
the file-system work of a bulk import), or, where the file system has no user extended
attributes, a file under `<root>/.regrasp-store/meta/`. `<root>/.regrasp-store/` is
reserved and never listed; its `tmp/` holds writes in flight. A copy of the folder made
without extended attributes (a plain `cp -r`) stays correct: a missing record is rebuilt
by hashing the file on its next `stat`.

Folders emptied by deletes are pruned. A key cannot be both an object and a folder here
(`a` and `a/b`), unlike S3: such a put raises `Conflict`. `presigned_get_url` returns None.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import stat as stat_module
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from regrasp.platform.errors import (
    Conflict,
    InvalidInput,
    ObjectAccessDenied,
    ObjectNotFound,
    RegraspError,
    StorageError,
)
from regrasp.platform.store.objects.base import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectStore,
    guess_content_type,
    sha256_of_file,
    validate_key,
)

#: Top-level folder of the root that holds the store's own bookkeeping; not a valid key.
RESERVED_DIR = ".regrasp-store"
#: Folders that temporary files are spread over (see `_write`).
_TMP_FOLDERS = 16

# A concurrent delete may prune the target's folder between our mkdir and rename.
_RENAME_ATTEMPTS = 5


class FileObjectStore(ObjectStore):
    """Objects as files under `root` (created on first write)."""

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, url: str | None = None
    ) -> None:
        """`fsync=False` skips flushing each object to disk before its rename: faster for
        throwaway caches, but a power cut may then leave an empty file behind."""
        self.root = Path(root).absolute()
        self.url = url or f"file://{self.root}"
        self._fsync = fsync

    def local_path(self, key: str) -> Path:
        """The file that holds (or would hold) `key`, for tools that need a path."""
        return self._path(validate_key(key))

    # -- backend hooks -------------------------------------------------------------------

    def _put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        view = memoryview(data)
        chunks = (view[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE))
        return self._write(key, chunks, content_type)

    def _put_stream(
        self, key: str, stream: BinaryIO, length: int | None, content_type: str
    ) -> ObjectInfo:
        return self._write(key, _read_chunks(key, stream, length), content_type)

    def _put_bytes_deferred(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        view = memoryview(data)
        chunks = (view[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE))
        return self._write(key, chunks, content_type, fsync=False)

    def _sync(self) -> None:
        """One `syncfs` of the root's file system (every file and rename under it), the
        way `cp` + `sync` makes a copy durable; `os.sync` where `syncfs` is unavailable."""
        if not self._fsync:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    @contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        with _os_errors(key, self.root):
            stream = open(self._path(key), "rb")  # closed in the finally below
        try:
            yield stream
        finally:
            stream.close()

    def _stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with _os_errors(key, self.root):
            st = os.stat(path)
            if not _is_regular(st):
                raise ObjectNotFound(key)
            meta = self._read_meta(key)
            if meta is not None and _meta_matches(meta, st):
                return _info(key, st, meta["sha256"], meta["content_type"])
            # Unknown or stale checksum (written by another tool, or mid-rewrite): hash the
            # file and record it, unless it changed again while we read it.
            sha256 = sha256_of_file(path)
            content_type = meta["content_type"] if meta is not None else guess_content_type(key)
            if _same_file(os.stat(path), st):
                self._record_meta(key, st, sha256, content_type)
            return _info(key, st, sha256, content_type)

    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        head = prefix.rpartition("/")[0]
        if head.split("/", 1)[0] == RESERVED_DIR:
            return iter(())  # the store's bookkeeping holds no objects
        folder = self.root.joinpath(*head.split("/")) if head else self.root
        return self._walk(folder, f"{head}/" if head else "", prefix, recursive)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        with _os_errors(key, self.root):
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                pass  # absent, or a folder of other keys: no object here, nothing to delete
            self._meta_path(key).unlink(missing_ok=True)
        self._prune(path.parent)

    def _presigned_get_url(self, key: str, expires: timedelta) -> str | None:
        return None

    # -- internals -----------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        if key.split("/", 1)[0] == RESERVED_DIR:
            raise InvalidInput(f"object key {key!r}: {RESERVED_DIR}/ is reserved by the store")
        return self.root.joinpath(*key.split("/"))

    def _meta_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / RESERVED_DIR / "meta" / digest[:2] / f"{digest}.json"

    def _write(
        self, key: str, chunks: Iterable[bytes], content_type: str, *, fsync: bool = True
    ) -> ObjectInfo:
        target = self._path(key)
        # Temporary files go to one of a few folders by thread: writers creating files in
        # one shared folder contend on its lock in the kernel (a third more system time
        # with 2-4 importer threads).
        tmp_dir = self.root / RESERVED_DIR / "tmp" / str(threading.get_native_id() % _TMP_FOLDERS)
        with _os_errors(key, self.root):
            try:
                fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
            except FileNotFoundError:  # the first write of this store
                tmp_dir.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:  # the caller's stream: its errors are its own, unmapped
                    digest.update(chunk)
                    with _os_errors(key, self.root):
                        out.write(chunk)
                sha256 = digest.hexdigest()
                with _os_errors(key, self.root):
                    out.flush()
                    st = os.fstat(out.fileno())
                    # Recorded before the rename: the object appears with its checksum.
                    recorded = _set_meta_xattr(out.fileno(), _meta(key, st, sha256, content_type))
                    if self._fsync and fsync:
                        os.fsync(out.fileno())
            self._rename_into_place(key, Path(tmp), target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if not recorded:
            self._record_meta_file(key, _meta(key, st, sha256, content_type))
        return _info(key, st, sha256, content_type)

    def _rename_into_place(self, key: str, tmp: Path, target: Path) -> None:
        for attempt in range(_RENAME_ATTEMPTS):
            try:
                if attempt:  # the folder is missing (new, or pruned by a delete meanwhile)
                    target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
                return
            except FileNotFoundError:
                if attempt == _RENAME_ATTEMPTS - 1:
                    raise StorageError(f"file store {self.root}: could not write {key}") from None
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                raise Conflict(
                    f"object key {key!r} collides with an existing object or folder in the "
                    f"file store (a key cannot be both an object and a folder): {exc.strerror}"
                ) from exc
            except PermissionError as exc:
                raise ObjectAccessDenied(key) from exc
            except OSError as exc:
                raise StorageError(f"file store {self.root}: writing {key}: {exc}") from exc

    def _read_meta(self, key: str) -> dict | None:
        """The record of `key`: its extended attribute, else its file under `meta/`."""
        raw: bytes | None
        try:
            raw = os.getxattr(self._path(key), _META_XATTR)
        except OSError:  # no attribute, or no extended attributes on this file system
            try:
                raw = self._meta_path(key).read_bytes()
            except OSError:
                return None
        try:
            meta = json.loads(raw)
        except ValueError:
            return None
        return meta if isinstance(meta, dict) and meta.get("key") == key else None

    def _record_meta(
        self, key: str, st: os.stat_result, sha256: str, content_type: str | None
    ) -> None:
        """Best effort: the object is already in place, and a missing or stale record only
        costs a rehash on the next `stat`, so failing to write one fails nothing."""
        meta = _meta(key, st, sha256, content_type)
        if not _set_meta_xattr(self._path(key), meta):
            self._record_meta_file(key, meta)

    def _record_meta_file(self, key: str, meta: dict) -> None:
        """The record as a file under `meta/`, for file systems without user xattrs.

        Written in place with one `write`: a record read half-written, or mixed from two
        writers, is not valid JSON for this key and size, so it only costs a rehash.
        """
        path = self._meta_path(key)
        payload = json.dumps(meta).encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            try:
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, flags, 0o644)
        except OSError:
            return
        try:
            os.write(fd, payload)
        except OSError:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _walk(
        self, folder: Path, key_prefix: str, prefix: str, recursive: bool
    ) -> Iterator[ObjectInfo]:
        """Yield objects under `folder` in key order, lazily, one folder level at a time.

        Folders sort as `name/` so that `a-b` comes before everything in `a/`, as in S3.
        """
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        except PermissionError as exc:
            raise ObjectAccessDenied(key_prefix or prefix or "/") from exc
        except OSError as exc:
            raise StorageError(f"file store {self.root}: listing {key_prefix!r}: {exc}") from exc
        children = []
        for entry in entries:
            if not key_prefix and entry.name == RESERVED_DIR:
                continue
            if entry.is_dir(follow_symlinks=False):
                children.append((f"{key_prefix}{entry.name}/", entry))
            elif entry.is_file(follow_symlinks=False):
                children.append((f"{key_prefix}{entry.name}", entry))
        children.sort(key=lambda child: child[0])
        for key, entry in children:
            if not key.startswith(prefix):
                continue
            if key.endswith("/"):
                if recursive:
                    yield from self._walk(Path(entry.path), key, prefix, recursive)
                continue
            if not recursive and "/" in key[len(prefix) :]:
                continue
            if not _is_valid_key(key):
                continue  # a file no key can name (e.g. a backslash in it): not an object
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while we listed
            yield _info(key, st, None, None)

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty by a delete, up to (not including) the root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone / not ours): stop climbing
            folder = folder.parent


#: Extended attribute holding an object's record (JSON, as the `meta/` files hold it).
_META_XATTR = "user.regrasp.meta"


def _meta(key: str, st: os.stat_result, sha256: str, content_type: str | None) -> dict:
    return {
        "key": key,
        "sha256": sha256,
        "content_type": content_type,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ino": st.st_ino,
    }


def _set_meta_xattr(target: int | Path, meta: dict) -> bool:
    """Record `meta` on the file (a descriptor or a path); False where the file system
    refuses user extended attributes (the caller then writes a `meta/` file)."""
    try:
        os.setxattr(target, _META_XATTR, json.dumps(meta).encode())
    except OSError:
        return False
    return True


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's `syncfs(fd)` (Linux), or None where the C library has none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def _read_chunks(key: str, stream: BinaryIO, length: int | None) -> Iterator[bytes]:
    remaining = length
    while remaining is None or remaining > 0:
        size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
        chunk = stream.read(size)
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk
    if remaining:
        raise InvalidInput(f"put_stream({key!r}): stream ended {remaining} bytes short of length")


@contextmanager
def _os_errors(key: str, root: Path) -> Iterator[None]:
    """Map OS errors about `key` to the store's typed errors."""
    try:
        yield
    except RegraspError:
        raise
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise ObjectNotFound(key) from exc
    except PermissionError as exc:
        raise ObjectAccessDenied(key) from exc
    except OSError as exc:
        raise StorageError(f"file store {root}: {key}: {exc}") from exc


def _info(key: str, st: os.stat_result, sha256: str | None, content_type: str | None) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=st.st_size,
        sha256=sha256,
        etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
        last_modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC),
        content_type=content_type,
    )


def _is_regular(st: os.stat_result) -> bool:
    return stat_module.S_ISREG(st.st_mode)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_ino, b.st_size, b.st_mtime_ns)


def _meta_matches(meta: dict, st: os.stat_result) -> bool:
    return (meta.get("ino"), meta.get("size"), meta.get("mtime_ns")) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    ) and isinstance(meta.get("sha256"), str)


def _is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidInput:
        return False
    return True
