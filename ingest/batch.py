"""Index one batch of asset ids: the body of the Celery task, safe to run any number of times.

Redelivery is normal (a task that outlives Redis' visibility timeout, a killed worker), so the
batch first claims its rows (counting attempts, giving up past the cap into the failures table),
adopts points that a previous delivery already stored, and encodes only what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from clipdex.catalog.batching import chunked
from clipdex.catalog.models import Asset, AssetIndexState, AssetState, Failure, Location, utcnow
from clipdex.runtime import Runtime
from ingest.payload import payloads_for
from ingest.pipeline import Pipeline, WorkItem

OPEN_STATES = (AssetState.PENDING, AssetState.QUEUED, AssetState.PROCESSING)


@dataclass(slots=True)
class BatchOutcome:
    claimed: int = 0
    encoded: int = 0
    reused: int = 0
    failed: int = 0
    gave_up: int = 0
    skipped: int = 0  # already indexed or failed: a duplicate delivery

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def work_items(session: Session, version_id: int, asset_ids: Sequence[str]) -> list[WorkItem]:
    """One live path per asset, for assets in an open state."""
    items: dict[str, WorkItem] = {}
    for chunk in chunked(asset_ids):
        query = (
            select(Asset.id, Asset.sha256, Location.path)
            .join(Location, Location.asset_id == Asset.id)
            .join(AssetIndexState, AssetIndexState.asset_id == Asset.id)
            .where(
                Asset.id.in_(chunk),
                Location.missing.is_(False),
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.state.in_(OPEN_STATES),
            )
            .order_by(Location.path)
        )
        for asset_id, sha256, path in session.execute(query):
            items.setdefault(asset_id, WorkItem(asset_id, sha256, path))
    return list(items.values())


def index_assets(runtime: Runtime, version_id: int, asset_ids: Sequence[str]) -> BatchOutcome:
    outcome = BatchOutcome()
    cap = runtime.settings.max_attempts
    with runtime.sessions() as session:
        rows = [
            row
            for chunk in chunked(asset_ids)
            for row in session.scalars(
                select(AssetIndexState)
                .where(
                    AssetIndexState.index_version_id == version_id,
                    AssetIndexState.asset_id.in_(chunk),
                )
                .with_for_update()
            )
        ]
        now = utcnow()
        for row in rows:
            if row.state not in OPEN_STATES:
                outcome.skipped += 1
            elif row.attempts >= cap:
                row.state = AssetState.FAILED
                _dead_letter(session, row.asset_id, f"gave up after {row.attempts} attempts")
                outcome.gave_up += 1
            else:
                row.state = AssetState.PROCESSING
                row.attempts += 1
                row.updated_at = now
                outcome.claimed += 1
        session.commit()
        claimed = [r.asset_id for r in rows if r.state == AssetState.PROCESSING]
        items = work_items(session, version_id, claimed)

    _, index = runtime.live_index()
    stored = set()
    for chunk in chunked(item.asset_id for item in items):
        stored |= index.existing_ids(chunk)
    if stored:  # an earlier delivery upserted these and died before its commit
        with runtime.sessions() as session:
            for row in session.scalars(
                select(AssetIndexState).where(
                    AssetIndexState.index_version_id == version_id,
                    AssetIndexState.asset_id.in_(sorted(stored)),
                )
            ):
                row.state = AssetState.INDEXED
            session.flush()
            index.set_payloads(payloads_for(session, stored))
            session.commit()
        outcome.reused = len(stored)
    pipeline = Pipeline(
        runtime.encoder, index, runtime.sessions, version_id, runtime.decode_limits(),
        runtime.settings.batch_size, runtime.settings.decode_workers,
    )  # fmt: skip
    result = pipeline.run([item for item in items if item.asset_id not in stored])
    outcome.encoded, outcome.failed = result.encoded, result.failed
    return outcome


def _dead_letter(session: Session, asset_id: str, reason: str) -> None:
    paths = session.scalars(
        select(Location.path).where(Location.asset_id == asset_id, Location.missing.is_(False))
    ).all()
    for path in paths:
        row = session.scalars(select(Failure).where(Failure.path == path)).first()
        if row is None:
            session.add(Failure(path=path, asset_id=asset_id, stage="worker", reason=reason))
        else:
            row.stage, row.reason, row.last_failed_at = "worker", reason, utcnow()
