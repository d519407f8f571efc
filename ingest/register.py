"""Bring the catalog in line with what a scan found (GUIDE §3: scan -> register as pending).

Unchanged files (same size and mtime) are not even hashed. Changed and new files are hashed,
and content decides: new content becomes a pending asset; known content under a new path is a
move (its old path vanished in this scan) or a duplicate; either way the vector is reused.
Paths that vanished are marked missing; an asset left with no path leaves the index. Known
content at a new path whose old path outside the scanned roots no longer exists moved too
(from another library, or a renamed top folder).

Read the catalog as plain rows, ``classify`` (pure: rows in, a plan out), ``apply_plan`` with
set-based, chunked Core statements: no round trip and no ORM object per file.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    and_,
    bindparam,
    delete,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import AssetState, Base, Location, utcnow
from ingest.hashing import Content, hash_all
from ingest.records import FAILURES, executemany
from ingest.scan import FoundFile

ASSETS = Base.metadata.tables["assets"]
LOCATIONS = Base.metadata.tables["locations"]
_L = LOCATIONS.c
LOCATION_COLUMNS = (_L.id, _L.path, _L.asset_id, _L.size_bytes, _L.mtime_ns, _L.missing)
STATES = Base.metadata.tables["asset_index_states"]


@dataclass(slots=True)
class RegisterResult:
    new: int = 0
    modified: int = 0
    unchanged: int = 0
    moved: int = 0
    duplicates: int = 0
    failed_read: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    touched: set[str] = field(default_factory=set)  # assets whose set of paths changed
    orphaned: set[str] = field(default_factory=set)  # assets with no live path left


class KnownLocation(NamedTuple):
    id: int
    path: str
    asset_id: str
    size_bytes: int
    mtime_ns: int
    missing: bool


class FailureRow(NamedTuple):
    path: str
    asset_id: str | None
    stage: str
    reason: str


class LocationWrite(NamedTuple):
    asset_id: str
    size_bytes: int
    mtime_ns: int


class NewAsset(NamedTuple):
    id: str
    sha256: str
    size_bytes: int


@dataclass(slots=True)
class KnownContent:
    """What the catalog holds about the hashed content and the scanned paths."""

    states: Mapping[str, str | None]  # every known asset id -> its state in this version, or None
    failures: Sequence[FailureRow] = ()  # at the scanned paths or of failed assets; oldest first
    # Live paths of that content outside the scanned roots that no longer exist: seen again at
    # a new path, such content moved there, whatever root it came from.
    vanished: Sequence[KnownLocation] = ()


@dataclass(slots=True)
class RegisterPlan:
    new_assets: list[NewAsset] = field(default_factory=list)
    new_states: set[str] = field(default_factory=set)  # asset ids that become pending here
    new_locations: dict[str, LocationWrite] = field(default_factory=dict)  # by path
    updated_locations: dict[int, LocationWrite] = field(default_factory=dict)  # by location id
    gone_locations: list[int] = field(default_factory=list)  # location ids now missing
    forget_failures: list[str] = field(default_factory=list)  # failure paths to delete
    copy_failures: list[FailureRow] = field(default_factory=list)
    new: int = 0
    modified: int = 0
    unchanged: int = 0
    moved: int = 0
    duplicates: int = 0
    touched: set[str] = field(default_factory=set)  # assets whose set of paths changed
    # Lost a path and gained none: orphaned unless a live path outside the roots remains.
    orphan_candidates: set[str] = field(default_factory=set)


def root_clause(root: Path, column: SQLColumnExpression[str] | None = None) -> ColumnElement[bool]:
    """Rows whose path (``Location.path`` unless told) is at or below ``root``, as an
    index-friendly range on the path column."""
    path = Location.path if column is None else column
    text = str(root)
    below = text.rstrip(os.sep) + os.sep
    upper = below[:-1] + chr(ord(os.sep) + 1)
    return or_(path == text, and_(path >= below, path < upper))


def register(
    session: Session,
    index_version_id: int,
    roots: Sequence[Path],
    found: Sequence[FoundFile],
    hash_workers: int,
    on_hashed: Callable[[int], None] | None = None,
    spared: Sequence[Path] = (),
) -> RegisterResult:
    """``spared``: folders under the roots that were not scanned (a library root that is not
    mounted): their paths are left as they are, never marked missing."""
    session.flush()  # the statements below bypass the unit of work: write what it holds first
    failed_read: list[tuple[str, str]] = []
    with _cyclic_gc_paused():
        existing = load_locations(session, roots, spared)
        to_hash = [item for item in found if not is_unchanged(existing.get(item.path), item)]
        contents = hash_all(to_hash, hash_workers, failed_read, on_hashed)
        known = load_known(session, index_version_id, roots, contents.values())
        plan = classify(existing, found, contents, known)
        orphaned = apply_plan(session, index_version_id, plan)
    return RegisterResult(
        new=plan.new,
        modified=plan.modified,
        unchanged=plan.unchanged,
        moved=plan.moved,
        duplicates=plan.duplicates,
        failed_read=failed_read,
        touched=plan.touched - orphaned,
        orphaned=orphaned,
    )


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Registering builds a few small objects per file, all kept to the end; each full cyclic
    collection meanwhile walks every object the process holds, which doubled the cost of a
    rescan. Reference counting frees memory as usual while the collector waits."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def is_unchanged(known: KnownLocation | None, item: FoundFile) -> bool:
    if known is None or known.missing:
        return False
    return known.size_bytes == item.size and known.mtime_ns == item.mtime_ns


def classify(
    existing: Mapping[str, KnownLocation],
    found: Sequence[FoundFile],
    contents: Mapping[str, Content],
    known: KnownContent,
) -> RegisterPlan:
    """Decide every change without touching the database. ``existing``: the catalog's
    locations under the scanned roots, by path; ``contents``: what hashing found, by path (a
    changed file missing from it could not be read and is left as it is)."""
    plan = RegisterPlan()
    failures = _FailureBook(known.failures)
    states = known.states
    seen = {item.path for item in found}
    gone_assets: set[str] = set()
    for loc in [*existing.values(), *known.vanished]:
        if not loc.missing and loc.path not in seen:
            plan.gone_locations.append(loc.id)
            gone_assets.add(loc.asset_id)
            failures.forget(loc.path)
    plan.touched |= gone_assets
    lost = set(gone_assets)
    live: set[str] = set()
    created: set[str] = set()
    current: dict[str, str] = {}  # path -> asset, as written by this plan
    for item in found:
        location = existing.get(item.path)
        if is_unchanged(location, item):
            plan.unchanged += 1
            continue
        content = contents.get(item.path)
        if content is None:
            continue
        asset_id = content.asset_id
        if item.path in current:
            previous: str | None = current[item.path]
        else:
            previous = location.asset_id if location is not None and not location.missing else None
        if asset_id in states or asset_id in created:
            if previous == asset_id:
                plan.unchanged += 1  # touched (mtime changed) but same bytes
            elif previous is not None:
                plan.modified += 1
            elif asset_id in gone_assets and asset_id not in created:
                plan.moved += 1
                gone_assets.discard(asset_id)
            else:
                plan.duplicates += 1
        else:
            plan.new_assets.append(NewAsset(asset_id, content.sha256, item.size))
            created.add(asset_id)
            if previous is not None:
                plan.modified += 1
            else:
                plan.new += 1
        state = states.get(asset_id)
        if state is None:
            plan.new_states.add(asset_id)
        write = LocationWrite(asset_id, item.size, item.mtime_ns)
        if location is None:
            plan.new_locations[item.path] = write
        else:
            plan.updated_locations[location.id] = write
        if previous != asset_id:
            failures.forget(item.path)
            if state == AssetState.FAILED:
                failures.copy(asset_id, item.path)
            if previous is not None:
                plan.touched.add(previous)
                lost.add(previous)
        current[item.path] = asset_id
        plan.touched.add(asset_id)
        live.add(asset_id)
    plan.forget_failures = failures.forgotten
    plan.copy_failures = list(failures.copies.values())
    plan.orphan_candidates = lost - live
    return plan


class _FailureBook:
    """The failure rows as registering file by file sees them at each step: a forgotten path's
    row is gone, and a copy takes the stage and reason of the asset's oldest row still there."""

    def __init__(self, rows: Iterable[FailureRow]) -> None:
        self.rows = {row.path: row for row in rows}
        self.by_asset: dict[str, list[FailureRow]] = {}
        for row in self.rows.values():
            if row.asset_id is not None:
                self.by_asset.setdefault(row.asset_id, []).append(row)
        self.forgotten: list[str] = []
        self.copies: dict[str, FailureRow] = {}

    def forget(self, path: str) -> None:
        if self.rows.pop(path, None) is None:
            return
        if self.copies.pop(path, None) is None:
            self.forgotten.append(path)

    def copy(self, asset_id: str, path: str) -> None:
        """Same bytes as a file that failed: the same reason, from a row still there or, when a
        move forgot the only one, from the row as it was before this scan."""
        known = self.by_asset.get(asset_id, [])
        present = [row for row in known if self.rows.get(row.path) is row]
        for row in present or known[:1]:
            made = FailureRow(path, asset_id, row.stage, row.reason)
            self.rows[path] = self.copies[path] = made
            known.append(made)
            return


def load_locations(
    session: Session, roots: Sequence[Path], spared: Sequence[Path] = ()
) -> dict[str, KnownLocation]:
    """The catalog's locations at or below ``roots`` and not below ``spared``, by path."""
    if not roots:
        return {}
    from ingest.spared import Spared  # it builds on root_clause, defined here

    c = LOCATIONS.c
    query = select(*LOCATION_COLUMNS).where(or_(*(root_clause(root, c.path) for root in roots)))
    left = Spared(spared)
    clause = left.clause(c.path)
    if clause is not None:
        query = query.where(clause)
    rows = session.execute(query).all()
    if len(left) and not left.in_sql:
        rows = [row for row in rows if not left.holds(row[1])]
    return {row[1]: KnownLocation(*row) for row in rows}


def vanished_elsewhere(
    session: Session, roots: Sequence[Path], asset_ids: Collection[str]
) -> list[KnownLocation]:
    """Live locations of ``asset_ids`` outside ``roots`` whose file no longer exists."""
    c = LOCATIONS.c
    query = select(*LOCATION_COLUMNS).where(c.missing.is_(False))
    if roots:
        query = query.where(not_(or_(*(root_clause(root, c.path) for root in roots))))
    rows = [
        KnownLocation(*row)
        for chunk in chunked(sorted(asset_ids))
        for row in session.execute(query.where(c.asset_id.in_(chunk)))
    ]
    return [row for row in rows if not os.path.lexists(row.path)]


def load_known(
    session: Session, version_id: int, roots: Sequence[Path], contents: Iterable[Content]
) -> KnownContent:
    """Which of this content the catalog knows (with its state in ``version_id``), and the
    failure rows that registering may forget or copy."""
    states: dict[str, str | None] = {}
    joined = ASSETS.outerjoin(
        STATES, and_(STATES.c.asset_id == ASSETS.c.id, STATES.c.index_version_id == version_id)
    )
    query = select(ASSETS.c.id, STATES.c.state).select_from(joined)
    for chunk in chunked({content.asset_id for content in contents}):
        states.update((id_, s) for id_, s in session.execute(query.where(ASSETS.c.id.in_(chunk))))
    f = FAILURES.c
    columns = select(f.id, f.path, f.asset_id, f.stage, f.reason)
    queries = [columns.where(or_(*(root_clause(root, f.path) for root in roots)))] if roots else []
    failed = [asset_id for asset_id, state in states.items() if state == AssetState.FAILED]
    queries += [columns.where(f.asset_id.in_(chunk)) for chunk in chunked(failed)]
    failures = {row[0]: FailureRow(*row[1:]) for query in queries for row in session.execute(query)}
    vanished = vanished_elsewhere(session, roots, states)
    return KnownContent(states, [failures[key] for key in sorted(failures)], vanished)


def apply_plan(session: Session, version_id: int, plan: RegisterPlan) -> set[str]:
    """Write ``plan`` with set-based statements; returns the assets left with no live path.
    Rows go in key order: inserting random keys into a large index misses its page cache."""
    now = utcnow()
    by_id = LOCATIONS.c.id == bindparam("b_id")
    gone = update(LOCATIONS).where(by_id).values(missing=True)
    executemany(session, gone, ({"b_id": id_} for id_ in plan.gone_locations))
    for chunk in chunked(plan.forget_failures):
        session.execute(delete(FAILURES).where(FAILURES.c.path.in_(chunk)))
    assets = insert(ASSETS).values(created_at=now)
    executemany(session, assets, (asset._asdict() for asset in sorted(plan.new_assets)))
    pending = {"index_version_id": version_id, "state": AssetState.PENDING, "attempts": 0}
    states = insert(STATES).values({**pending, "updated_at": now})
    executemany(session, states, ({"asset_id": asset_id} for asset_id in sorted(plan.new_states)))
    added = insert(LOCATIONS).values(last_seen_at=now, missing=False)
    new_locations = sorted(plan.new_locations.items())
    executemany(session, added, ({"path": p, **w._asdict()} for p, w in new_locations))
    seen = update(LOCATIONS).where(by_id).values(last_seen_at=now, missing=False)
    executemany(
        session, seen, ({"b_id": i, **w._asdict()} for i, w in plan.updated_locations.items())
    )
    copies = insert(FAILURES).values(attempts=1, first_failed_at=now, last_failed_at=now)
    executemany(session, copies, (copy._asdict() for copy in plan.copy_failures))
    return without_live_paths(session, plan.orphan_candidates)


def without_live_paths(session: Session, asset_ids: Collection[str]) -> set[str]:
    alive: set[str] = set()
    c = LOCATIONS.c
    for chunk in chunked(asset_ids):
        query = select(c.asset_id).where(c.asset_id.in_(chunk), c.missing.is_(False)).distinct()
        alive.update(session.scalars(query))
    return set(asset_ids) - alive
