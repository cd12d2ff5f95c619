"""Dataset file formats: readers of public grasp datasets laid out as folders or zip archives.

`regrasp.data.formats.jacquard` and `regrasp.data.formats.cornell` scan a dataset lazily (file names
only) and read pixels on demand, through a `Source` (`regrasp.data.formats.sources`): a folder,
or a zip archive whose members are streamed, never extracted, and whose member names are
checked so none escapes the root (zip-slip).
"""

from regrasp.data.formats.sources import (
    MAX_FILE_BYTES,
    FolderSource,
    ScannedDataset,
    Source,
    ZipSource,
    check_member_name,
    open_source,
)

__all__ = [
    "MAX_FILE_BYTES",
    "FolderSource",
    "ScannedDataset",
    "Source",
    "ZipSource",
    "check_member_name",
    "open_source",
]
