"""What `clipdex failures` and ``GET /v1/failures`` list: every file that could not be indexed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.catalog.models import Failure


def failure_rows(session: Session) -> list[dict[str, Any]]:
    """Path, stage, reason and attempts of every recorded failure, ordered by path."""
    rows = session.scalars(select(Failure).order_by(Failure.path)).all()
    return [
        {"path": r.path, "stage": r.stage, "reason": r.reason, "attempts": r.attempts} for r in rows
    ]
