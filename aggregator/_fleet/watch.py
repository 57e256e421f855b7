"""Has a watched file changed? A stamp of each path, compared on every check (no inotify).

A stamp is `os.stat` of the path, symlinks followed: (device, inode, size, mtime_ns). An
edit changes size or mtime; an atomic rename (`mv new mesh.toml`) gives the path another
inode; a Kubernetes ConfigMap update swaps the `..data` symlink to a new directory, so the
path resolves to another file, another inode. The path is looked up afresh on every check,
never an inode held from before: the directory's current entry is what counts. A missing
file stamps as None. A check is one `stat` per path (and one directory listing per glob).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

FileStamp = tuple[int, int, int, int]
"""(device, inode, size, mtime_ns) of the file a path resolves to."""


def file_stamp(path: str | os.PathLike[str]) -> FileStamp | None:
    """The stamp of `path` (None when it does not exist or cannot be read)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def expand(patterns: Iterable[str]) -> tuple[str, ...]:
    """The files the glob `patterns` match now, sorted, each once (the order they merge in)."""
    found: dict[str, None] = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                found.setdefault(path, None)
    return tuple(found)
