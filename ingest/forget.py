"""Letting go: assets left with no live path leave the index, and a removed library takes its
paths (and the assets no other path holds) with it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, delete, not_, select, update
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Failure, Location
from core.runtime import Runtime
from core.store import VectorIndex
from ingest.building import mirror_to_building
from ingest.libraries import find_library, own_folders
from ingest.payload import payloads_for
from ingest.records import set_states
from ingest.register import root_clause, without_live_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemovedLibrary:
    id: int
    path: str
    paths: int  # locations forgotten
    removed: int  # assets that left the index (no other path holds their bytes)

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "path": self.path, "paths": self.paths, "removed": self.removed}


def remove_orphans(
    session: Session, version_id: int, index: Callable[[], VectorIndex], orphaned: set[str]
) -> int:
    """Assets with no live path leave the index; the asset row stays as content history."""
    if not orphaned:
        return 0
    for chunk in chunked(sorted(orphaned)):
        index().delete(chunk)
        session.execute(
            delete(AssetIndexState).where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.asset_id.in_(chunk),
            )
        )
    return len(orphaned)


def refresh_payloads(
    session: Session, version_id: int, index: Callable[[], VectorIndex], touched: set[str]
) -> None:
    """Moves and new duplicate paths change an indexed point's payload, not its vector. An
    indexed asset whose point is gone (deleted, a lost store) goes back to pending instead, so
    this run encodes it again rather than failing on a payload write to no point."""
    for chunk in chunked(sorted(touched)):
        indexed = session.scalars(
            select(AssetIndexState.asset_id).where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.state == AssetState.INDEXED,
                AssetIndexState.asset_id.in_(chunk),
            )
        ).all()
        if not indexed:  # opens the store only when an indexed point's paths changed
            continue
        stored = index().existing_ids(indexed)
        lost = [asset_id for asset_id in indexed if asset_id not in stored]
        if lost:
            log.warning("%d indexed assets had no point; they are encoded again", len(lost))
            set_states(session, version_id, lost, AssetState.PENDING)
        if stored:
            index().set_payloads(payloads_for(session, stored))


def remove_library(runtime: Runtime, ref: str | int) -> RemovedLibrary:
    """Forget the library, its paths and their failure rows; its assets that no other live
    path holds (another library, an upload, a folder ingested by name) leave the index."""
    own = own_folders(runtime.settings)  # uploads under a library: not the library's
    with runtime.sessions() as session:
        library = find_library(session, ref)
        root = Path(library.path)
        spared = [folder for folder in own if folder.is_relative_to(root)]
        mine = and_(root_clause(root), *(not_(root_clause(f)) for f in spared))
        rows = session.execute(select(Location.id, Location.asset_id).where(mine))
        located = list(rows)
        for chunk in chunked([str(id_) for id_, _ in located]):
            session.execute(delete(Location).where(Location.id.in_([int(i) for i in chunk])))
        failed_here = [root_clause(root, Failure.path)]
        failed_here += [not_(root_clause(f, Failure.path)) for f in spared]
        session.execute(delete(Failure).where(and_(*failed_here)))
        session.delete(library)
        session.flush()
        touched = {asset_id for _, asset_id in located}
        orphaned = without_live_paths(session, touched)
        removed = 0
        if touched:
            version = runtime.live_version()

            def index() -> VectorIndex:
                return runtime.index_of(version)

            removed = remove_orphans(session, version.id, index, orphaned)
            refresh_payloads(session, version.id, index, touched - orphaned)
        session.commit()
        return RemovedLibrary(library.id, library.path, len(located), removed)


def forget_paths(runtime: Runtime, paths: Collection[str]) -> int:
    """Mark these exact paths missing, as a folder scan marks a deleted file (a manifest row
    whose file is gone): an asset left with no live path leaves the index, the others get
    their payloads rewritten. Returns how many live paths were marked."""
    if not paths:
        return 0
    version = runtime.live_version()

    def index() -> VectorIndex:
        return runtime.index_of(version)

    with runtime.sessions() as session:
        touched: set[str] = set()
        marked = 0
        for chunk in chunked(sorted(paths)):
            live = Location.path.in_(chunk), Location.missing.is_(False)
            found = list(session.scalars(select(Location.asset_id).where(*live)))
            touched.update(found)
            marked += len(found)
            session.execute(update(Location).where(*live).values(missing=True))
        orphaned = without_live_paths(session, touched)
        remove_orphans(session, version.id, index, orphaned)
        mirror_to_building(session, version.id, runtime.index_of, orphaned)
        refresh_payloads(session, version.id, index, touched - orphaned)
        session.commit()
    return marked
