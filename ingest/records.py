"""What the pipeline, inline ingest and the batch task write to the catalog: per-asset states,
failure rows, and the adoption of points a dead run already stored."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

from sqlalchemy import Executable, Integer, String, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Base, Failure, Location, utcnow
from core.store.base import VectorIndex
from ingest.payload import payloads_for

FAILURES = Base.metadata.tables["failures"]
WRITE_BATCH = 5000  # rows per executemany: bounds the parameter lists held at once
FailureInput = tuple[str, str, str, str | None]  # (path, stage, reason, asset id or None)


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


def record_failures(session: Session, rows: Iterable[FailureInput]) -> None:
    """What ``record_failure`` for each row in order would leave (a repeated path updates the
    row its first occurrence made), in statements per chunk, not per row: the known paths are
    read in chunks, new rows go in one executemany INSERT and the others in one executemany
    UPDATE. Core statements: the session is flushed first, and loaded Failure objects go stale."""
    merged: dict[str, tuple[str, str, str | None, int]] = {}
    for path, stage, reason, asset_id in rows:
        if path in merged:  # a repeat updates the row the first one made
            kept, count = merged[path][2], merged[path][3]
            merged[path] = (stage, reason, asset_id if asset_id is not None else kept, count + 1)
        else:
            merged[path] = (stage, reason, asset_id, 1)
    if not merged:
        return
    session.flush()
    existing: dict[str, int] = {}
    for chunk in chunked(merged):
        query = select(FAILURES.c.path, FAILURES.c.id).where(FAILURES.c.path.in_(chunk))
        existing.update((path, id_) for path, id_ in session.execute(query))
    now = utcnow()
    new = insert(FAILURES).values(first_failed_at=now, last_failed_at=now)
    executemany(
        session,
        new,
        (
            {"path": path, "stage": stage, "reason": reason, "asset_id": asset_id, "attempts": n}
            for path, (stage, reason, asset_id, n) in merged.items()
            if path not in existing
        ),
    )
    again = (
        update(FAILURES)
        .where(FAILURES.c.id == bindparam("b_id"))
        .values(
            stage=bindparam("b_stage"),
            reason=bindparam("b_reason"),
            asset_id=func.coalesce(bindparam("b_asset", type_=String(36)), FAILURES.c.asset_id),
            attempts=FAILURES.c.attempts + bindparam("b_count", type_=Integer),
            last_failed_at=now,
        )
    )
    executemany(
        session,
        again,
        (
            {
                "b_id": existing[path],
                "b_stage": stage,
                "b_reason": reason,
                "b_asset": asset_id,
                "b_count": n,
            }
            for path, (stage, reason, asset_id, n) in merged.items()
            if path in existing
        ),
    )


def executemany(session: Session, statement: Executable, rows: Iterable[dict[str, Any]]) -> None:
    """Execute ``statement`` once per row, as executemany calls of at most WRITE_BATCH rows."""
    iterator = iter(rows)
    while batch := list(islice(iterator, WRITE_BATCH)):
        session.execute(statement, batch)


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
