"""`regrasp.platform.store.objects.mirror` between two `file://` stores (S3 is covered,
with the CLI, by tests/integration/test_backup_restore.py)."""

from __future__ import annotations

import pytest

from regrasp.platform.errors import InvalidInput
from regrasp.platform.store.objects import open_store
from regrasp.platform.store.objects.mirror import mirror


@pytest.fixture
def stores(tmp_path):
    return open_store(f"file://{tmp_path / 'a'}"), open_store(f"file://{tmp_path / 'b'}")


def test_mirror_copies_with_checksums_then_skips_what_is_identical(stores, tmp_path):
    src, dst = stores
    src.put_bytes("datasets/d/o/i/rgb.png", b"\x89PNG" + b"x" * 100)
    src.put_bytes("models/1/weights.pt", b"w" * 10)
    first = mirror(src, dst)
    assert (first.copied, first.skipped, first.bytes_copied) == (2, 0, 114)
    for info in src.list():
        assert dst.get_bytes(info.key) == src.get_bytes(info.key)
        assert dst.stat(info.key).sha256 == src.stat(info.key).sha256
        assert dst.stat(info.key).content_type == src.stat(info.key).content_type

    # Again: nothing to do. One object changed at the source: only it is copied. An
    # object only in the destination stays; one written behind the store's back (no
    # recorded checksum) is hashed and copied.
    assert mirror(src, dst).copied == 0
    src.put_bytes("models/1/weights.pt", b"v" * 10)
    dst.put_bytes("exports/only-here.txt", b"keep me")
    (tmp_path / "a" / "other.bin").write_bytes(b"by another tool")
    seen: list[tuple[str, bool]] = []
    third = mirror(src, dst, workers=1, on_object=lambda k, c: seen.append((k, c)))
    assert (third.copied, third.skipped) == (2, 1)
    assert sorted(seen) == [
        ("datasets/d/o/i/rgb.png", False),
        ("models/1/weights.pt", True),
        ("other.bin", True),
    ]
    assert dst.get_bytes("models/1/weights.pt") == b"v" * 10
    assert dst.get_bytes("other.bin") == b"by another tool"
    assert dst.get_bytes("exports/only-here.txt") == b"keep me"


def test_mirror_of_a_prefix_and_bad_arguments(stores):
    src, dst = stores
    src.put_bytes("datasets/a/x.png", b"a")
    src.put_bytes("models/m/w.pt", b"m")
    assert mirror(src, dst, prefix="models/").copied == 1
    assert [o.key for o in dst.list()] == ["models/m/w.pt"]
    with pytest.raises(InvalidInput, match="same store"):
        mirror(src, open_store(src.url))
    with pytest.raises(InvalidInput, match="workers"):
        mirror(src, dst, workers=0)
