"""Walk folders for image files without leaving the root.

Symlinks are never followed (a link can point outside the root or form a cycle); sockets,
FIFOs and devices are skipped; only files with an image extension are candidates. Content, not
the extension, decides the real format later.

File names are bytes on Linux; Python decodes the ones that are not valid UTF-8 with
surrogateescape. The catalog stores text (SQLite, PostgreSQL), so such a path cannot be stored
as it is: an image whose path is not valid UTF-8 is recorded as failed with the reason
"file name is not valid UTF-8" (or "folder name ...", for everything under such a folder),
under its path with each undecodable byte written ``\\xNN`` (:func:`stored_form`), and the run
goes on. Renaming the file to valid UTF-8 indexes it on the next run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.images import IMAGE_EXTENSIONS

NOT_UTF8_FILE = "file name is not valid UTF-8; rename it to index it"
NOT_UTF8_FOLDER = "folder name is not valid UTF-8; nothing under it was indexed; rename it"


class UnusableRoot(ValueError):
    """A root given to ingest whose path cannot be stored in the catalog."""


def is_storable(path: str) -> bool:
    """Whether ``path`` is valid Unicode text (no surrogateescape bytes), as the catalog needs."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def stored_form(path: str) -> str:
    """Text for a path that is not valid UTF-8: each undecodable byte as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class FoundFile:
    path: str  # absolute, as it will be stored in the catalog
    size: int
    mtime_ns: int


@dataclass(slots=True)
class ScanTally:
    ignored: int = 0  # regular files that are not images by extension
    skipped: int = 0  # symlinks and special files
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def normalize_roots(paths: list[Path]) -> list[Path]:
    """Absolute, existing roots; a root inside another root is dropped."""
    roots: list[Path] = []
    for path in sorted({p.expanduser().resolve() for p in paths}):
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if not is_storable(str(path)):
            raise UnusableRoot(
                f"the path {stored_form(str(path))} is not valid UTF-8 and cannot be stored in "
                "the catalog; rename it"
            )
        if not any(path.is_relative_to(r) for r in roots):
            roots.append(path)
    return roots


def scan(root: Path, tally: ScanTally) -> Iterator[FoundFile]:
    """Yield the image files under ``root`` (or ``root`` itself if it is a file)."""
    if root.is_file():
        found = _consider(str(root), tally)
        if found is not None:
            yield found
        return
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            tally.unreadable.append(
                (stored_form(folder), f"cannot list folder: {error.strerror or error}")
            )
            continue
        subfolders = []
        for entry in entries:
            if entry.is_symlink():
                tally.skipped += 1
            elif entry.is_dir(follow_symlinks=False):
                if is_storable(entry.name):
                    subfolders.append(entry.path)
                else:
                    tally.unreadable.append((stored_form(entry.path), NOT_UTF8_FOLDER))
            else:
                found = _consider(entry.path, tally)
                if found is not None:
                    yield found
        stack.extend(reversed(subfolders))


def _consider(path: str, tally: ScanTally) -> FoundFile | None:
    if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS:
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            regular = False
        if regular:
            tally.ignored += 1
        else:
            tally.skipped += 1
        return None
    try:
        info = os.lstat(path)
    except OSError as error:
        tally.unreadable.append((stored_form(path), f"cannot stat file: {error.strerror or error}"))
        return None
    if not stat.S_ISREG(info.st_mode):
        tally.skipped += 1
        return None
    if not is_storable(path):
        tally.unreadable.append((stored_form(path), NOT_UTF8_FILE))
        return None
    return FoundFile(path, info.st_size, info.st_mtime_ns)
