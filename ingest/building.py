"""Writes to the index versions being built: an ingest that runs while a reindex builds a new
version registers its new assets there too (``pending``, so the reindex's next pass encodes
them) and removes the assets that lost their last path from it (points and rows). The
reindex's catch-up passes stay the safety net for anything that arrives another way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, IndexVersion, VersionState, utcnow
from core.store import VectorIndex


def add_pending(session: Session, version_id: int, ids: set[str]) -> int:
    """A ``pending`` row for ``version_id`` per asset id the caller found unknown. A row that
    another process (an ingest and a reindex at once) inserted meanwhile is left as it is."""
    now = utcnow()
    statement = _insert_or_keep(session)
    for chunk in chunked(sorted(ids)):
        session.execute(
            statement,
            [
                {"asset_id": a, "index_version_id": version_id, "state": AssetState.PENDING,
                 "attempts": 0, "updated_at": now}
                for a in chunk
            ],
        )  # fmt: skip
    return len(ids)


def mirror_to_building(
    session: Session,
    live_id: int,
    index_of: Callable[[IndexVersion], VectorIndex],
    orphaned: set[str],
) -> int:
    """After a registration on the live version: every ``building`` version gets a pending row
    for each asset pending on the live one that it does not know, and loses the ``orphaned``
    assets (their points, then their rows). Returns how many rows were added. Costs one query
    when nothing is being built."""
    building = session.scalars(
        select(IndexVersion).where(IndexVersion.state == VersionState.BUILDING)
    ).all()
    if not building:
        return 0
    pending = set(
        session.scalars(
            select(AssetIndexState.asset_id).where(
                AssetIndexState.index_version_id == live_id,
                AssetIndexState.state == AssetState.PENDING,
            )
        )
    )
    added = 0
    for version in building:
        known = _known(session, version.id, pending | orphaned)
        added += add_pending(session, version.id, pending - known)
        gone = sorted(orphaned & known)
        for chunk in chunked(gone):
            index_of(version).delete(list(chunk))
            session.execute(
                delete(AssetIndexState).where(
                    AssetIndexState.index_version_id == version.id,
                    AssetIndexState.asset_id.in_(chunk),
                )
            )
    return added


def _insert_or_keep(session: Session) -> Any:
    """INSERT that skips rows whose key exists (PostgreSQL and SQLite say it alike)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(AssetIndexState).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(AssetIndexState).on_conflict_do_nothing()
    return insert(AssetIndexState)


def _known(session: Session, version_id: int, ids: set[str]) -> set[str]:
    known: set[str] = set()
    for chunk in chunked(sorted(ids)):
        known.update(
            session.scalars(
                select(AssetIndexState.asset_id).where(
                    AssetIndexState.index_version_id == version_id,
                    AssetIndexState.asset_id.in_(chunk),
                )
            )
        )
    return known
