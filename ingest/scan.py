"""Walk folders for image files without leaving the root.

Symlinks are never followed (a link can point outside the root or form a cycle); sockets,
FIFOs and devices are skipped; only files with an image extension are candidates. Content, not
the extension, decides the real format later. Hidden names (a leading dot) and the system
folders of NAS boxes and other systems (``SYSTEM_FOLDERS``) are excluded unless the rules
include hidden names, and so is whatever matches the rules' gitignore-style globs (relative to
the rules' base: the library root).

File names are bytes on Linux; Python decodes the ones that are not valid UTF-8 with
surrogateescape. The catalog stores text (SQLite, PostgreSQL), so such a path cannot be stored
as it is: an image whose path is not valid UTF-8 is recorded as failed with the reason
"file name is not valid UTF-8" (or "folder name ...", for everything under such a folder),
under its path with each undecodable byte written ``\\xNN`` (:func:`stored_form`), and the run
goes on. Renaming the file to valid UTF-8 indexes it on the next run.
"""

from __future__ import annotations

import copy
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from core.images import IMAGE_EXTENSIONS
from core.paths import UnusablePath, is_utf8, resolved

NOT_UTF8_FILE = "file name is not valid UTF-8; rename it to index it"
NOT_UTF8_FOLDER = "folder name is not valid UTF-8; nothing under it was indexed; rename it"


# Folders that systems and NAS boxes write next to photos (thumbnails, recycle bins, indexes).
SYSTEM_FOLDERS = frozenset(
    name.casefold()
    for name in (
        "@eaDir", "#recycle", "#snapshot", "@Recycle", "@Recently-Snapshot", ".@__thumb",
        ".thumbnails", "System Volume Information", "$RECYCLE.BIN", "RECYCLER", "lost+found",
        ".Trashes", ".Spotlight-V100", ".fseventsd", "__MACOSX",
    )
)  # fmt: skip


class UnusableRoot(ValueError):
    """A root given to ingest whose path cannot be stored in the catalog."""


class BadExclude(UnusableRoot):
    """An exclude glob that is not a valid gitignore-style pattern."""


def exclude_spec(globs: Sequence[str]) -> pathspec.GitIgnoreSpec:
    """Compiled gitignore-style globs; an invalid one is a ``BadExclude`` naming it."""
    for glob in globs:
        try:
            pathspec.GitIgnoreSpec.from_lines([glob])
        except ValueError as error:
            raise BadExclude(f"invalid exclude pattern {glob!r}: {error}") from None
    return pathspec.GitIgnoreSpec.from_lines(globs)


class ScanRules:
    """What a scan leaves out: hidden and system names (unless ``include_hidden``), paths
    matching ``excludes`` (relative to ``base``), and the ``prune`` folders (scanned apart)."""

    def __init__(
        self,
        base: Path | None = None,
        excludes: Sequence[str] = (),
        include_hidden: bool = False,
        prune: Iterable[str] = (),
    ) -> None:
        self.base = str(base).rstrip(os.sep) + os.sep if base is not None else None
        self.spec = exclude_spec(excludes) if excludes and base is not None else None
        self.include_hidden = include_hidden
        self.prune = frozenset(prune)

    def pruning(self, folders: Iterable[Path]) -> ScanRules:
        """These rules, also leaving out ``folders`` (clipdex's blob root and store under a
        root: their files are uploads and the store, never a library's)."""
        pruned = copy.copy(self)
        pruned.prune = self.prune | {str(folder) for folder in folders}
        return pruned

    def leaves_out(self, root: Path, base: Path) -> bool:
        """Whether ``root``, named inside the folder ``base`` these rules are for, is left out
        by them: itself, or a folder between (``exports/``, ``@eaDir``, a hidden folder)."""
        if root == base or not root.is_relative_to(base):
            return False
        step = base
        for part in root.relative_to(base).parts:
            step = step / part
            folder = step != root or root.is_dir()
            if self.excludes(str(step), part, folder):
                return True
        return False

    def excludes(self, path: str, name: str, folder: bool) -> bool:
        if not self.include_hidden and (name.startswith(".") or name.casefold() in SYSTEM_FOLDERS):
            return True
        if self.spec is None or self.base is None or not path.startswith(self.base):
            return False
        relative = path[len(self.base) :] + ("/" if folder else "")
        return self.spec.match_file(relative)


DEFAULT_RULES = ScanRules()


def is_storable(path: str) -> bool:
    """Whether ``path`` is valid Unicode text (no surrogateescape bytes), as the catalog needs."""
    return is_utf8(path)


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
    excluded: int = 0  # files and folders left out: hidden, system, matching an exclude
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    # Folders that could not be listed and files that could not be stat'ed: there, but what
    # they hold is unknown, so their catalog paths are kept (never marked missing).
    unlisted: list[Path] = field(default_factory=list)


def normalize_roots(paths: list[Path]) -> list[Path]:
    """Absolute, existing roots; a root inside another root is dropped."""
    roots: list[Path] = []
    for path in sorted({resolved(p) for p in paths}):
        try:
            there = path.exists()
        except OSError as error:  # a folder on the way that cannot be searched
            raise UnusablePath(f"cannot reach {path}: {error.strerror or error}") from None
        if not there:
            raise FileNotFoundError(f"no such file or folder: {path}")
        if not is_storable(str(path)):
            raise UnusableRoot(
                f"the path {stored_form(str(path))} is not valid UTF-8 and cannot be stored in "
                "the catalog; rename it"
            )
        if not any(path.is_relative_to(r) for r in roots):
            roots.append(path)
    return roots


def scan(root: Path, tally: ScanTally, rules: ScanRules = DEFAULT_RULES) -> Iterator[FoundFile]:
    """Yield the image files under ``root`` (or ``root`` itself if it is a file) that ``rules``
    keep; ``root`` itself is never excluded (it was named)."""
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
            if is_storable(folder):
                tally.unlisted.append(Path(folder))
            continue
        subfolders = []
        for entry in entries:
            is_folder = entry.is_dir(follow_symlinks=False)
            if is_folder and entry.path in rules.prune:
                continue  # scanned apart, with its own rules
            if rules.excludes(entry.path, entry.name, is_folder):
                tally.excluded += 1
            elif entry.is_symlink():
                tally.skipped += 1
            elif is_folder:
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
        if is_storable(path):
            tally.unlisted.append(Path(path))
        return None
    if not stat.S_ISREG(info.st_mode):
        tally.skipped += 1
        return None
    if not is_storable(path):
        tally.unreadable.append((stored_form(path), NOT_UTF8_FILE))
        return None
    return FoundFile(path, info.st_size, info.st_mtime_ns)
