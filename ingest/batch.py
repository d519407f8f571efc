"""Index one batch of asset ids: the body of the Celery task, safe to run any number of times.

Redelivery is normal (a task that outlives Redis' visibility timeout, a killed worker), so the
batch first claims its rows (counting attempts, giving up past the cap into the failures table),
adopts points that a previous delivery already stored, and encodes only what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from core.catalog.batching import chunked
from core.catalog.index_versions import check_declared
from core.catalog.models import AssetIndexState, AssetState, utcnow
from core.runtime import Runtime
from ingest.pipeline import Pipeline, work_items
from ingest.records import adopt_stored, fail_live_paths

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


def index_assets(runtime: Runtime, version_id: int, asset_ids: Sequence[str]) -> BatchOutcome:
    """Index ``asset_ids`` into the collection of ``version_id``, the version the message names
    (never the process's idea of the live one), with a model that must have built it."""
    version = runtime.version(version_id)
    check_declared(version, runtime.encoder.declared)
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
                reason = f"gave up after {row.attempts} attempts"
                fail_live_paths(session, row.asset_id, "worker", reason)
                outcome.gave_up += 1
            else:
                row.state = AssetState.PROCESSING
                row.attempts += 1
                row.updated_at = now
                outcome.claimed += 1
        session.commit()
        claimed = [r.asset_id for r in rows if r.state == AssetState.PROCESSING]
        items = work_items(session, version_id, OPEN_STATES, claimed)

    if not items:
        return outcome
    index = runtime.index_of(version)
    with runtime.sessions() as session:  # an earlier delivery upserted these, then died
        stored = adopt_stored(session, version_id, index, [item.asset_id for item in items])
        session.commit()
    outcome.reused = len(stored)
    pipeline = Pipeline(
        runtime.encoder, index, runtime.sessions, version_id, runtime.decode_limits(version),
        runtime.settings.batch_size, runtime.settings.decode_workers,
    )  # fmt: skip
    result = pipeline.run([item for item in items if item.asset_id not in stored])
    outcome.encoded, outcome.failed = result.encoded, result.failed
    return outcome
