"""Failure rows: what `clipdex failures` and ``GET /v1/failures`` list (every file that could
not be indexed), which of them a scan finds resolved, and which it tries again."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Failure
from core.images import STAGE_READ
from ingest.register import root_clause
from ingest.spared import Spared


def failure_rows(session: Session) -> list[dict[str, Any]]:
    """Path, stage, reason and attempts of every recorded failure, ordered by path."""
    rows = session.scalars(select(Failure).order_by(Failure.path)).all()
    return [
        {"path": r.path, "stage": r.stage, "reason": r.reason, "attempts": r.attempts} for r in rows
    ]


def clear_resolved(
    session: Session, roots: Sequence[Path], spared: Sequence[Path], failing: Collection[str]
) -> int:
    """Forget the failures of paths under ``roots`` that the scan met without an asset (a
    folder it could not list, a name that is not UTF-8, a file it could not read) and that
    this scan no longer reports in ``failing``: the folder is readable again, the file was
    renamed, fixed or deleted. Failures of assets (a file that would not decode) follow their
    paths in registration instead; paths under ``spared`` were not scanned."""
    if not roots:
        return 0
    query = select(Failure.id, Failure.path).where(
        Failure.asset_id.is_(None),
        Failure.stage == STAGE_READ,  # not a manifest's bad rows ("/x/m.csv:3"), nor a worker's
        or_(*(root_clause(root, Failure.path) for root in roots)),
    )
    left = Spared(spared)
    clause = left.clause(Failure.path)
    if clause is not None:
        query = query.where(clause)
    resolved = [
        str(id_)
        for id_, path in session.execute(query)
        if path not in failing and not (len(left) and not left.in_sql and left.holds(path))
    ]
    for chunk in chunked(resolved):
        session.execute(delete(Failure).where(Failure.id.in_([int(i) for i in chunk])))
    return len(resolved)


# How core.images.read_limited words an OS error on a read, and a read that stalled.
UNREADABLE = ("cannot read file:", "reading took longer than")


def retry_unreadable(session: Session, version_id: int, found: Collection[str]) -> int:
    """Assets that failed because their file could not be read (moved away for a moment, a
    permission slip, a network mount down), whose path this scan ``found`` again, go back to
    pending: the run reads them again instead of keeping them failed for good. A file still
    unreadable fails again, one read per run. Returns how many went back."""
    rows = session.execute(
        select(Failure.path, Failure.asset_id).where(
            Failure.stage == STAGE_READ,
            Failure.asset_id.is_not(None),
            or_(*(Failure.reason.startswith(prefix, autoescape=True) for prefix in UNREADABLE)),
        )
    ).all()
    back = sorted({str(asset_id) for path, asset_id in rows if path in found})
    retried = 0
    for chunk in chunked(back):
        result = session.execute(
            update(AssetIndexState)
            .where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.asset_id.in_(chunk),
                AssetIndexState.state == AssetState.FAILED,
            )
            .values(state=AssetState.PENDING)
        )
        retried += int(getattr(result, "rowcount", 0) or 0)
    return retried
