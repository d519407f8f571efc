"""Which points a library-wide command works on: every point of the index, or the assets with
a live path under one folder (the catalog knows those without reading any vector)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.models import Location
from core.store.base import VectorIndex


def selected_ids(
    index: VectorIndex, sessions: sessionmaker[Session], folder: str | None
) -> Iterable[str]:
    """Every point id of ``index``, or the ids of assets with a path under ``folder`` (absolute,
    as ingest stores paths); ids with no point are dropped later by ``retrieve``."""
    if folder is None:
        return index.iter_ids()
    prefix = folder.rstrip(os.sep) + os.sep
    with sessions() as session:
        return sorted(
            session.scalars(
                select(Location.asset_id)
                .where(Location.path.startswith(prefix, autoescape=True))
                .where(Location.missing.is_(False))
                .distinct()
            ).all()
        )
