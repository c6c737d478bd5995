"""File-walking and copying rules shared by the build steps."""
from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

from .layout import IGNORED_NAMES

#: Mode of every file the build writes (the zip sets its own modes per entry).
FILE_MODE = 0o644


class BuildError(RuntimeError):
    """The build cannot go on; the message says what to fix."""


def is_ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED_NAMES)


def iter_files(top: Path) -> list[Path]:
    """Files under ``top``, sorted, skipping caches and editor droppings."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        found.extend(Path(dirpath) / f for f in filenames if not is_ignored(f))
    return sorted(found)


def copy_file(src: Path, dst: Path) -> Path:
    """Copy bytes only (no timestamps, no source mode); the copy is 0644."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.chmod(FILE_MODE)  # a previous copy of a read-only source
    shutil.copyfile(src, dst)
    dst.chmod(FILE_MODE)
    return dst
