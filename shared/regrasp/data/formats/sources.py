"""Where dataset files come from: a folder or a zip archive, read through one `Source` API.

`regrasp.data.formats.jacquard` and `regrasp.data.formats.cornell` scan a dataset lazily (file names
only) and read pixels on demand. Both read through a `Source`, defined here: a folder, or
a zip archive whose members are streamed, never extracted. Opening an archive refuses
members whose paths would escape its root (absolute paths, `..`; "zip-slip") and symbolic
links, so a name taken from an archive is always safe to reuse as a relative path or an
object-store key, and a member's bytes are the member's own. A folder opened with `roots`
(the server's REGRASP_IMPORT_ROOTS) refuses files, symbolic links included, whose real
location is outside those roots, so a link cannot read what the path check refused.

Errors are `FormatError` and name the offending file (`location`), or archive member as
`archive.zip:member`.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Generic, Protocol, TypeVar

from regrasp.platform.errors import FormatError, InvalidInput

#: Largest file a reader loads into memory (bytes); a bigger one is refused as corrupt.
MAX_FILE_BYTES = 512 * 1024 * 1024

_DRIVE = re.compile(r"^[A-Za-z]:")


class Source(Protocol):
    """Where a dataset's files come from; `name`s are relative POSIX paths under the root."""

    root: str

    def names(self) -> list[str]:
        """Every file under the root, as sorted relative POSIX paths."""
        ...

    def read_bytes(self, name: str) -> bytes:
        """The content of one file; FormatError naming it when it cannot be read."""
        ...

    def location(self, name: str) -> str:
        """A human-readable place for messages: a path, or `archive.zip:member`."""
        ...

    def close(self) -> None:
        """Release open handles; a folder has none."""
        ...


def open_source(
    path: str | Path,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    roots: Sequence[str | Path] = (),
) -> Source:
    """A `FolderSource` for a directory (confined to `roots`), a `ZipSource` for a zip."""
    path = Path(path)
    if path.is_dir():
        return FolderSource(path, max_file_bytes=max_file_bytes, roots=roots)
    if path.is_file():
        return ZipSource(path, max_file_bytes=max_file_bytes)
    raise FormatError(f"{path}: no such folder or zip archive")


class FolderSource:
    """Files of a directory tree, read from disk on demand."""

    def __init__(
        self,
        root: str | Path,
        *,
        max_file_bytes: int = MAX_FILE_BYTES,
        roots: Sequence[str | Path] = (),
    ) -> None:
        """`roots`: folders every file must really lie under (empty: anywhere)."""
        self._root = Path(root)
        if not self._root.is_dir():
            raise FormatError(f"{self._root}: not a folder")
        self.root = str(self._root)
        self._max = max_file_bytes
        self._roots = tuple(Path(r).expanduser().resolve() for r in roots)

    def names(self) -> list[str]:
        """Every file under the root (links followed, each folder once), sorted.

        Walked with `os.scandir` and plain strings: a `Path` per file costs several times
        the memory, which adds up over a 54k-image dataset's 270k files.
        """
        names: list[str] = []
        seen: set[tuple[int, int]] = set()
        stack = [("", str(self._root))]
        while stack:
            rel, folder = stack.pop()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in seen:
                    continue  # a link back to a folder already walked
                seen.add((st.st_dev, st.st_ino))
                with os.scandir(folder) as entries:
                    for entry in entries:
                        name = f"{rel}{entry.name}"
                        if entry.is_dir():
                            stack.append((name + "/", entry.path))
                        elif entry.is_file():
                            self._check_inside_roots(entry.path)
                            names.append(name)
            except OSError as exc:
                raise FormatError(f"{folder}: cannot list ({exc.strerror or exc})") from exc
        names.sort()
        return names

    def _check_inside_roots(self, path: str) -> None:
        if not self._roots:
            return
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(r) for r in self._roots):
            raise FormatError(
                f"{path}: links to {real}, outside the import roots (REGRASP_IMPORT_ROOTS)"
            )

    def read_bytes(self, name: str) -> bytes:
        path = self._root / check_member_name(name, source=self.root)
        try:
            with open(path, "rb", buffering=0) as stream:  # one open, one fstat, one read
                size = os.fstat(stream.fileno()).st_size
                if size > self._max:
                    raise FormatError(f"{path}: {size} bytes exceeds the limit of {self._max}")
                return stream.read()
        except FileNotFoundError as exc:
            raise FormatError(f"{path}: file is missing") from exc
        except OSError as exc:
            raise FormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc

    def location(self, name: str) -> str:
        return str(self._root / name)

    def close(self) -> None:
        return None


class ZipSource:
    """Members of a zip archive, streamed on demand; the archive stays open until `close`.

    Every member name is checked when the archive is opened (see `check_member_name`), and
    symbolic-link members are refused, so a malicious archive is refused before anything is
    read. The central directory is read once, by the opening thread; each thread that reads
    a member then uses its own file handle on the archive (no lock shared between readers),
    so the threads of an importer or a data loader read and inflate members in parallel.
    """

    def __init__(self, archive: str | Path, *, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.root = str(archive)
        self._path = Path(archive)
        self._max = max_file_bytes
        self._local = threading.local()
        self._handles: list[BinaryIO] = []
        self._handles_lock = threading.Lock()  # guards the list only, never a read
        self._closed = False
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise FormatError(f"{archive}: not a readable zip archive ({exc})") from exc
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = check_member_name(info.filename, source=self.root)
            if stat.S_ISLNK(info.external_attr >> 16):
                # Its content is the link's target; an unzip tool would follow it
                # out of the archive, so the archive is refused, not the file skipped.
                raise FormatError(f"{self.root}: member {name!r} is a symbolic link; refusing it")
            if not info.is_dir():
                self._members[name] = info

    def names(self) -> list[str]:
        return sorted(self._members)

    def read_bytes(self, name: str) -> bytes:
        info = self._members.get(name)
        if info is None:
            raise FormatError(f"{self.location(name)}: no such member")
        if info.file_size > self._max:
            raise FormatError(
                f"{self.location(name)}: {info.file_size} bytes exceeds the limit of {self._max}"
            )
        if info.flag_bits & 0x1:
            raise FormatError(f"{self.location(name)}: encrypted members are not supported")
        try:
            handle = self._handle()
            handle.seek(info.header_offset)
            header = handle.read(_ZIP_LOCAL_HEADER.size)
            if len(header) != _ZIP_LOCAL_HEADER.size:
                raise zipfile.BadZipFile("truncated local file header")
            magic, name_len, extra_len = _ZIP_LOCAL_HEADER.unpack(header)
            if magic != b"PK\x03\x04":
                raise zipfile.BadZipFile("bad magic number for the local file header")
            handle.seek(name_len + extra_len, os.SEEK_CUR)
            # ZipExtFile inflates exactly `compress_size` bytes and checks the CRC-32.
            with zipfile.ZipExtFile(handle, "r", info, None, close_fileobj=False) as member:
                return member.read(self._max + 1)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
            raise FormatError(f"{self.location(name)}: corrupt member ({exc})") from exc

    def location(self, name: str) -> str:
        return f"{self.root}:{name}"

    def close(self) -> None:
        with self._handles_lock:
            self._closed = True
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()

    def _handle(self) -> BinaryIO:
        """This thread's own read handle on the archive, opened on first use."""
        handle: BinaryIO | None = getattr(self._local, "handle", None)
        if handle is None or handle.closed:
            with self._handles_lock:
                if self._closed:
                    raise OSError("the archive is closed")
                handle = open(self._path, "rb")  # noqa: SIM115 - closed by close()
                self._handles.append(handle)
            self._local.handle = handle
        return handle


#: Signature, file-name length and extra-field length of a zip local file header
#: (the 30 bytes before a member's data; the lengths are at offsets 26 and 28).
_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")


class DatasetImage(Protocol):
    """What `ScannedDataset` needs of an image: its object id and a full check."""

    @property
    def object_id(self) -> str: ...

    def validate(self) -> None: ...


ImageT = TypeVar("ImageT", bound=DatasetImage)


class ScannedDataset(Generic[ImageT]):
    """The scanned images of one source, in a stable order; a sequence and a context manager.

    Closing it closes the zip archive the images may read from.
    """

    def __init__(self, source: Source, images: list[ImageT]) -> None:
        self.source = source
        self.images: tuple[ImageT, ...] = tuple(images)

    @property
    def root(self) -> str:
        return self.source.root

    @property
    def objects(self) -> tuple[str, ...]:
        """Sorted distinct object ids."""
        return tuple(sorted({image.object_id for image in self.images}))

    def by_object(self) -> dict[str, list[ImageT]]:
        """Images grouped by object id, for object-wise splits."""
        groups: dict[str, list[ImageT]] = {}
        for image in self.images:
            groups.setdefault(image.object_id, []).append(image)
        return groups

    def validate(self, *, progress: Callable[[int, int], None] | None = None) -> None:
        """Read every file of every image; FormatError naming the first bad file.

        `progress(done, total)` is called after each image.
        """
        for done, image in enumerate(self.images, start=1):
            image.validate()
            if progress is not None:
                progress(done, len(self.images))

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> ScannedDataset[ImageT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[ImageT]:
        return iter(self.images)

    def __getitem__(self, index: int) -> ImageT:
        return self.images[index]


def check_member_name(name: str, *, source: str = "<archive>") -> str:
    """Return `name` if it is a relative path that stays under its root, else FormatError.

    Refused: empty names, absolute paths (`/x`, `C:x`), any `..` component, backslashes
    (a Windows separator that could hide `..\\`) and NUL bytes.
    """
    bad = (
        not name
        or "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or _DRIVE.match(name) is not None
        or ".." in PurePosixPath(name).parts
    )
    if bad:
        raise FormatError(f"{source}: member {name!r} escapes the dataset root; refusing it")
    return name.rstrip("/") if name.endswith("/") else name


def read_text(source: Source, name: str) -> str:
    """A UTF-8 text file of a source; FormatError naming it when it is not text."""
    try:
        return source.read_bytes(name).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{source.location(name)}: not a UTF-8 text file ({exc.reason})") from exc


def as_format_error(source: Source, name: str, exc: InvalidInput) -> FormatError:
    """Re-raise a decoding error as a FormatError that names the file it came from."""
    if isinstance(exc, FormatError):
        return exc
    return FormatError(f"{source.location(name)}: {exc}")
