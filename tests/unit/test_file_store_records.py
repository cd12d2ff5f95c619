"""The file store's checksum records: an extended attribute of each object, or a `meta/`
file where the file system has no user extended attributes; stale ones are rehashed."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from regrasp.platform.store.objects.file import RESERVED_DIR, FileObjectStore


def _no_xattrs(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOTSUP, "Operation not supported")


@pytest.mark.parametrize("xattrs", [True, False])
def test_checksum_recorded_and_rehashed_after_an_outside_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xattrs: bool
) -> None:
    if not xattrs:  # a file system without user extended attributes
        monkeypatch.setattr(os, "setxattr", _no_xattrs)
        monkeypatch.setattr(os, "getxattr", _no_xattrs)
    store = FileObjectStore(tmp_path / "objects")
    put = store.put_bytes("d/o/i/rgb.png", b"first", durable=False)
    store.sync()
    assert put.sha256 == hashlib.sha256(b"first").hexdigest()
    assert store.stat("d/o/i/rgb.png").sha256 == put.sha256
    meta_files = list((tmp_path / "objects" / RESERVED_DIR / "meta").rglob("*.json"))
    assert len(meta_files) == (0 if xattrs else 1)

    path = store.local_path("d/o/i/rgb.png")
    path.write_bytes(b"changed behind the store's back")
    os.utime(path, ns=(1, 1))
    assert store.stat("d/o/i/rgb.png").sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [i.key for i in store.list("")] == ["d/o/i/rgb.png"]
