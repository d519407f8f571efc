"""Failure rows: what `clipdex failures` and ``GET /v1/failures`` list (every file that could
not be indexed), and which of them a scan finds resolved."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, not_, or_, select
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import Failure
from ingest.register import root_clause


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
        Failure.asset_id.is_(None), or_(*(root_clause(root, Failure.path) for root in roots))
    )
    if spared:
        query = query.where(not_(or_(*(root_clause(folder, Failure.path) for folder in spared))))
    resolved = [str(id_) for id_, path in session.execute(query) if path not in failing]
    for chunk in chunked(resolved):
        session.execute(delete(Failure).where(Failure.id.in_([int(i) for i in chunk])))
    return len(resolved)
