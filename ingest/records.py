"""What the pipeline, inline ingest and the batch task write to the catalog: per-asset states,
failure rows, and the adoption of points a dead run already stored."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Failure, Location, utcnow
from core.store.base import VectorIndex
from ingest.payload import payloads_for


def set_states(session: Session, version_id: int, ids: Iterable[str], state: str) -> None:
    for chunk in chunked(ids):
        session.execute(
            update(AssetIndexState)
            .where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.asset_id.in_(chunk),
            )
            .values(state=state, updated_at=utcnow())
        )


def record_failure(
    session: Session, path: str, stage: str, reason: str, asset_id: str | None = None
) -> None:
    """One failure row per path: created, or updated with the newest stage and reason."""
    row = session.scalars(select(Failure).where(Failure.path == path)).first()
    if row is None:
        session.add(Failure(path=path, asset_id=asset_id, stage=stage, reason=reason))
        return
    row.stage, row.reason = stage, reason
    row.asset_id = asset_id if asset_id is not None else row.asset_id
    row.attempts += 1
    row.last_failed_at = utcnow()


def fail_live_paths(session: Session, asset_id: str, stage: str, reason: str) -> int:
    """Every live path of a failed asset gets a failure row; returns how many."""
    paths = session.scalars(
        select(Location.path).where(Location.asset_id == asset_id, Location.missing.is_(False))
    ).all()
    for path in paths:
        record_failure(session, path, stage, reason, asset_id)
    return len(paths)


def adopt_stored(
    session: Session, version_id: int, index: VectorIndex, ids: Iterable[str]
) -> set[str]:
    """Points a killed run or delivery upserted before its catalog commit: the vector depends
    only on the bytes, so mark them indexed (and refresh their payload) instead of encoding."""
    stored: set[str] = set()
    for chunk in chunked(ids):
        stored |= index.existing_ids(chunk)
    if stored:
        set_states(session, version_id, stored, AssetState.INDEXED)
        index.set_payloads(payloads_for(session, stored))
    return stored
