"""Put dead-lettered assets back to work: the catalog side of ``clipdex retry``.

An asset is dead-lettered when the batch task gave up on it (failure stage ``worker``: the
worker died on it, or kept losing the catalog, ``CLIPDEX_MAX_ATTEMPTS`` times). Those are worth
another try once the cause is fixed. A bad file (stage ``read`` or ``decode``) gives the same
answer when decoded again, so it is retried only when asked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Failure, utcnow
from ingest.batch import STAGE_WORKER


@dataclass(frozen=True, slots=True)
class RetrySelection:
    asset_ids: list[str]
    bad_files_left: int  # failed assets left alone because their files are bad


def reset_failed(
    session: Session,
    version_id: int,
    failed_before: datetime | None = None,
    include_bad_files: bool = False,
) -> RetrySelection:
    """Set the chosen failed assets of ``version_id`` back to pending with no attempts and
    delete their failure rows (the caller commits). ``failed_before`` (naive UTC, like the
    catalog) keeps only assets whose last failure is older than that."""
    failed = list(
        session.scalars(
            select(AssetIndexState.asset_id).where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.state == AssetState.FAILED,
            )
        )
    )
    rows: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for chunk in chunked(failed):
        query = select(Failure.asset_id, Failure.stage, Failure.last_failed_at).where(
            Failure.asset_id.in_(chunk)
        )
        for asset_id, stage, last in session.execute(query):
            if asset_id is not None:
                rows[asset_id].append((stage, last))
    chosen: list[str] = []
    bad_files = 0
    for asset_id in sorted(failed):
        found = rows.get(asset_id, [])
        if failed_before is not None and (
            not found or max(last for _, last in found) >= failed_before
        ):
            continue
        if any(stage != STAGE_WORKER for stage, _ in found) and not include_bad_files:
            bad_files += 1
            continue
        chosen.append(asset_id)
    for chunk in chunked(chosen):
        session.execute(
            update(AssetIndexState)
            .where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.asset_id.in_(chunk),
            )
            .values(state=AssetState.PENDING, attempts=0, updated_at=utcnow())
        )
        session.execute(delete(Failure).where(Failure.asset_id.in_(chunk)))
    return RetrySelection(chosen, bad_files)
