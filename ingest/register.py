"""Bring the catalog in line with what a scan found (GUIDE §3: scan -> register as pending).

Unchanged files (same size and mtime) are not even hashed. Changed and new files are hashed,
and content decides: new content becomes a pending asset; known content under a new path is a
move (its old path vanished in this scan) or a duplicate; either way the vector is reused.
Paths that vanished are marked missing; an asset left with no path leaves the index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import Asset, AssetIndexState, AssetState, Failure, Location, utcnow
from core.ids import asset_id_for_digest, sha256_of_file
from ingest.scan import FoundFile


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


def root_clause(root: Path) -> ColumnElement[bool]:
    """Locations at or below ``root``, as an index-friendly range on the path column."""
    text = str(root)
    below = text.rstrip(os.sep) + os.sep
    upper = below[:-1] + chr(ord(os.sep) + 1)
    return or_(Location.path == text, and_(Location.path >= below, Location.path < upper))


def register(
    session: Session,
    index_version_id: int,
    roots: Sequence[Path],
    found: Sequence[FoundFile],
    hash_workers: int,
    on_hashed: Callable[[int], None] | None = None,
) -> RegisterResult:
    result = RegisterResult()
    existing = _existing_locations(session, roots)
    seen = {f.path for f in found}
    to_hash: list[FoundFile] = []
    for item in found:
        known = existing.get(item.path)
        if (
            known
            and not known.missing
            and (known.size_bytes, known.mtime_ns)
            == (
                item.size,
                item.mtime_ns,
            )
        ):
            result.unchanged += 1
        else:
            to_hash.append(item)

    gone = [loc for path, loc in existing.items() if path not in seen and not loc.missing]
    gone_assets = {loc.asset_id for loc in gone}
    now = utcnow()
    for loc in gone:
        loc.missing = True
        result.touched.add(loc.asset_id)
    _forget_failures(session, [loc.path for loc in gone])

    digests = _hash_all(to_hash, hash_workers, result, on_hashed)
    known_assets = _load_assets(session, {asset_id_for_digest(d) for d in digests.values()})
    states = _load_states(session, index_version_id, set(known_assets))
    created: set[str] = set()
    for item in to_hash:
        digest = digests.get(item.path)
        if digest is None:
            continue
        asset_id = asset_id_for_digest(digest)
        location = existing.get(item.path)
        previous_asset = location.asset_id if location and not location.missing else None
        if asset_id in known_assets or asset_id in created:
            if previous_asset == asset_id:
                result.unchanged += 1  # touched (mtime changed) but same bytes
            elif previous_asset is not None:
                result.modified += 1
            elif asset_id in gone_assets and asset_id not in created:
                result.moved += 1
                gone_assets.discard(asset_id)
            else:
                result.duplicates += 1
        else:
            session.add(Asset(id=asset_id, sha256=digest, size_bytes=item.size))
            created.add(asset_id)
            if previous_asset is not None:
                result.modified += 1
            else:
                result.new += 1
        if asset_id not in states:
            states[asset_id] = AssetIndexState(
                asset_id=asset_id, index_version_id=index_version_id, state=AssetState.PENDING
            )
            session.add(states[asset_id])
        if location is None:
            location = Location(
                path=item.path, asset_id=asset_id, size_bytes=item.size, mtime_ns=item.mtime_ns
            )
            session.add(location)
            existing[item.path] = location
        if previous_asset != asset_id:
            _forget_failures(session, [item.path])
            if states[asset_id].state == AssetState.FAILED:
                _copy_failure(session, asset_id, item.path)
        if previous_asset is not None and previous_asset != asset_id:
            result.touched.add(previous_asset)
        location.asset_id = asset_id
        location.size_bytes = item.size
        location.mtime_ns = item.mtime_ns
        location.missing = False
        location.last_seen_at = now
        result.touched.add(asset_id)
    session.flush()
    result.orphaned = _without_live_paths(session, result.touched)
    result.touched -= result.orphaned
    return result


def _existing_locations(session: Session, roots: Sequence[Path]) -> dict[str, Location]:
    if not roots:
        return {}
    rows = session.scalars(select(Location).where(or_(*(root_clause(r) for r in roots))))
    return {loc.path: loc for loc in rows}


def _hash_all(
    files: Sequence[FoundFile],
    workers: int,
    result: RegisterResult,
    on_hashed: Callable[[int], None] | None,
) -> dict[str, str]:
    def digest(item: FoundFile) -> tuple[str, str | None, str | None]:
        try:
            return item.path, sha256_of_file(Path(item.path)), None
        except OSError as error:
            return item.path, None, f"cannot read file: {error.strerror or error}"

    digests: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, value, reason in pool.map(digest, files):
            if value is not None:
                digests[path] = value
            else:
                result.failed_read.append((path, reason or "unreadable"))
            if on_hashed is not None:
                on_hashed(1)
    return digests


def _load_assets(session: Session, ids: set[str]) -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    for chunk in chunked(ids):
        assets.update({a.id: a for a in session.scalars(select(Asset).where(Asset.id.in_(chunk)))})
    return assets


def _load_states(session: Session, version_id: int, ids: set[str]) -> dict[str, AssetIndexState]:
    states: dict[str, AssetIndexState] = {}
    for chunk in chunked(ids):
        query = select(AssetIndexState).where(
            AssetIndexState.index_version_id == version_id, AssetIndexState.asset_id.in_(chunk)
        )
        states.update({s.asset_id: s for s in session.scalars(query)})
    return states


def _without_live_paths(session: Session, asset_ids: set[str]) -> set[str]:
    alive: set[str] = set()
    for chunk in chunked(asset_ids):
        query = select(Location.asset_id).where(
            Location.asset_id.in_(chunk), Location.missing.is_(False)
        )
        alive.update(session.scalars(query))
    return asset_ids - alive


def _forget_failures(session: Session, paths: Sequence[str]) -> None:
    for chunk in chunked(paths):
        session.execute(delete(Failure).where(Failure.path.in_(chunk)))


def _copy_failure(session: Session, asset_id: str, path: str) -> None:
    """Same bytes as a file that already failed: record the same reason, do not decode again."""
    original = session.scalars(select(Failure).where(Failure.asset_id == asset_id)).first()
    if original is not None:
        session.add(
            Failure(path=path, asset_id=asset_id, stage=original.stage, reason=original.reason)
        )
