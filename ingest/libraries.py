"""Libraries: folders the user asked clipdex to keep indexed, each with its own scan rules.

A library's root may be missing at scan time (a NAS not mounted, an unplugged disk): it is then
reported and its paths are spared, never marked missing, until the user removes the library. An
empty root that has indexed paths counts as missing too: an empty mount point looks like that.
Libraries do not nest (one path, one set of rules). ``plan_scans`` turns what ``ingest`` was
asked for (some folders, or every library) into scans with their rules.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.catalog.models import Library, Location, utcnow
from core.paths import UnusablePath, expand_user, resolved
from core.settings import Settings
from ingest.register import root_clause
from ingest.scan import (
    DEFAULT_RULES,
    ScanRules,
    UnusableRoot,
    exclude_spec,
    is_storable,
    normalize_roots,
    stored_form,
)

log = logging.getLogger(__name__)
MAX_ID = 2**63  # ids beyond a 64-bit integer name no library (and cannot be bound in SQL)


class BadLibrary(UnusableRoot):
    """A library that cannot be added: not a folder, or nested in or around another one."""


class NoLibraries(UnusableRoot):
    """``ingest`` with no folder named, and no library to rescan."""


class UnknownLibrary(LookupError):
    """No library has that path or id."""


@dataclass(frozen=True, slots=True)
class LibraryInfo:
    id: int
    path: str
    excludes: list[str]
    include_hidden: bool
    added_at: datetime
    last_scan_at: datetime | None
    last_scan: dict[str, Any] | None
    missing: bool  # the root is not there (or empty while paths are indexed under it)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "path": self.path, "excludes": self.excludes,
            "include_hidden": self.include_hidden, "added_at": self.added_at.isoformat(),
            "last_scan_at": self.last_scan_at.isoformat() if self.last_scan_at else None,
            "last_scan": self.last_scan, "missing": self.missing,
        }  # fmt: skip


def rules_of(library: Library, prune: Sequence[str] = ()) -> ScanRules:
    return ScanRules(Path(library.path), library.excludes or [], library.include_hidden, prune)


def has_live_paths(session: Session, root: Path) -> bool:
    query = select(Location.id).where(root_clause(root), Location.missing.is_(False)).limit(1)
    return session.scalar(query) is not None


def root_missing(session: Session, root: Path) -> bool:
    """Not a folder, or an empty folder while paths under it are indexed (an empty mount)."""
    if not root.is_dir():
        return True
    try:
        with os.scandir(root) as entries:
            empty = next(entries, None) is None
    except OSError:
        return True
    return empty and has_live_paths(session, root)


def info_of(session: Session, library: Library) -> LibraryInfo:
    return LibraryInfo(
        library.id, library.path, list(library.excludes or []), library.include_hidden,
        library.added_at, library.last_scan_at, library.last_scan,
        root_missing(session, Path(library.path)),
    )  # fmt: skip


def list_libraries(session: Session) -> list[LibraryInfo]:
    libraries = session.scalars(select(Library).order_by(Library.path)).all()
    return [info_of(session, library) for library in libraries]


def find_library(session: Session, ref: str | int) -> Library:
    """By id, or by path (as given, or resolved: a missing root cannot be resolved). An empty
    path names no library (``Path("")`` would be the working folder)."""
    if isinstance(ref, str) and not ref.strip():
        raise UnknownLibrary("no library is named by an empty path; see `clipdex library list`")
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        found = session.get(Library, int(ref)) if 0 < int(ref) < MAX_ID else None
    else:
        candidates = {ref, str(expand_user(Path(ref)).absolute()), str(_resolved(Path(ref)))}
        found = session.scalars(select(Library).where(Library.path.in_(candidates))).first()
    if found is None:
        raise UnknownLibrary(f"no library {ref!s}; see `clipdex library list`")
    return found


def _resolved(path: Path) -> Path:
    try:
        return resolved(path)
    except UnusablePath as error:  # a NUL, a lone surrogate, a name too long...
        raise BadLibrary(str(error)) from None


def resolved_root(text: str) -> Path:
    """A requested library path, absolute and resolved; a NUL in it is a ``BadLibrary``."""
    return _resolved(Path(text))


def own_folders(settings: Settings) -> list[Path]:
    """The folders that hold clipdex's own files: the blob root (uploads, under names without
    an extension) and the embedded store. Never a library's, nor scanned; the rest of the
    home may hold photos (``CLIPDEX_HOME=/data`` and a library at ``/data/photos``)."""
    return sorted({settings.blobs, settings.store_path})


def add_library(
    session: Session,
    path: Path,
    excludes: Sequence[str],
    include_hidden: bool,
    own: Sequence[Path] = (),
) -> tuple[Library, bool]:
    """Add ``path`` as a library, or set the rules of the library it already is; returns the
    row and whether it is new. Does not scan it (``ingest`` does). ``own``: clipdex's own
    folders (:func:`own_folders`), which no library may be inside."""
    root = _resolved(path)
    if not root.is_dir():
        raise BadLibrary(f"not a folder: {stored_form(str(root))}")
    if not is_storable(str(root)):
        raise BadLibrary(f"the path {stored_form(str(root))} is not valid UTF-8; rename it")
    _refuse_inside_own(root, own)
    exclude_spec(excludes)  # refuse a bad glob before storing it
    existing = session.scalars(select(Library).where(Library.path == str(root))).first()
    if existing is None:
        for other in session.scalars(select(Library)).all():
            other_root = Path(other.path)
            if root.is_relative_to(other_root) or other_root.is_relative_to(root):
                raise BadLibrary(
                    f"{root} is inside or around the library {other.path}; libraries do not "
                    "nest (use --exclude on the outer one, or remove it first)"
                )
        existing = Library(path=str(root), excludes=[], include_hidden=False)
        session.add(existing)
        created = True
    else:
        created = False
    existing.excludes = list(excludes)
    existing.include_hidden = include_hidden
    session.flush()
    return existing, created


@dataclass(slots=True)
class ScanPlan:
    """What one ingest scans, with which rules; which roots it registers; what it spares."""

    scans: list[tuple[Path, ScanRules, int | None]] = field(default_factory=list)  # library id
    roots: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)  # library roots not there: spared
    own: list[Path] = field(default_factory=list)  # clipdex's own folders under a root: spared
    excluded: int = 0  # roots named inside a library that its rules leave out

    @property
    def spared(self) -> list[Path]:
        """Folders under the roots whose catalog paths the run leaves as they are."""
        return [*self.missing, *self.own]


def plan_scans(session: Session, paths: Sequence[Path], own: Sequence[Path] = ()) -> ScanPlan:
    """Every library when ``paths`` is empty; else those paths, each with the rules of the
    library holding it (the defaults outside libraries; libraries inside are scanned apart).
    ``own``: clipdex's own folders (:func:`own_folders`). A root named inside one is refused,
    a library inside one is skipped, and one inside a root is not scanned and its paths are
    spared (uploads live there, under names no scan finds)."""
    libraries = list(session.scalars(select(Library).order_by(Library.path)).all())
    plan = ScanPlan()
    if not paths:
        if not libraries:
            raise NoLibraries(
                "no libraries to rescan: add one with `clipdex library add PATH`, or name the "
                "folders to ingest"
            )
        for library in libraries:
            _plan_library(session, plan, library)
        return _sparing_own(plan, own, named=[])
    for root in normalize_roots(list(paths)):
        plan.roots.append(root)
        holder = next((lib for lib in libraries if root.is_relative_to(lib.path)), None)
        if holder is not None and root_missing(session, Path(holder.path)):
            plan.missing.append(Path(holder.path))  # an unmounted share: spared, as always
            continue
        if holder is not None:
            rules = rules_of(holder)
            if rules.leaves_out(root, Path(holder.path)):  # as its library's scans do
                plan.excluded += 1
                continue
            plan.scans.append((root, rules, holder.id if root == Path(holder.path) else None))
            continue
        inside = [lib for lib in libraries if Path(lib.path).is_relative_to(root)]
        plan.scans.append(
            (root, ScanRules(prune=[lib.path for lib in inside]) if inside else DEFAULT_RULES, None)
        )
        for library in inside:
            _plan_library(session, plan, library, register_root=False)
    return _sparing_own(plan, own, named=list(plan.roots))


def _refuse_inside_own(root: Path, own: Sequence[Path]) -> None:
    holder = next((folder for folder in own if root.is_relative_to(folder)), None)
    if holder is not None:
        raise UnusableRoot(
            f"{stored_form(str(root))} is inside clipdex's own folder {holder} (the uploads "
            "under CLIPDEX_BLOB_ROOT, or the embedded store), not a library"
        )


def _sparing_own(plan: ScanPlan, own: Sequence[Path], named: Sequence[Path]) -> ScanPlan:
    for root in named:
        _refuse_inside_own(root, own)
    inside = {root for root, _, _ in plan.scans if any(root.is_relative_to(f) for f in own)}
    if inside:  # a library added before this rule, or before the blob root moved: left alone
        for root in sorted(inside):
            log.warning("library %s is inside clipdex's own folders: not scanned", root)
        plan.scans = [scan for scan in plan.scans if scan[0] not in inside]
        plan.roots = [root for root in plan.roots if root not in inside]
    plan.own = sorted({f for f in own for root in plan.roots if f.is_relative_to(root)})
    if plan.own:
        plan.scans = [
            (root, rules.pruning(f for f in plan.own if f.is_relative_to(root)), library)
            for root, rules, library in plan.scans
        ]
    return plan


def _plan_library(
    session: Session, plan: ScanPlan, library: Library, register_root: bool = True
) -> None:
    root = Path(library.path)
    if root_missing(session, root):
        plan.missing.append(root)
        return
    if register_root:
        plan.roots.append(root)
    plan.scans.append((root, rules_of(library), library.id))


def record_scans(session: Session, plan: ScanPlan, counts: dict[int, dict[str, int]]) -> None:
    """Each scanned library's counts, and a missing root's note, on its row."""
    now = utcnow()
    missing = {str(root) for root in plan.missing}
    for library in session.scalars(select(Library)).all():
        if library.id in counts:
            library.last_scan_at = now
            library.last_scan = {**counts[library.id], "root_missing": False}
        elif library.path in missing:
            library.last_scan = {**(library.last_scan or {}), "root_missing": True}
