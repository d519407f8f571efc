"""Index one batch of asset ids: the body of the Celery task, safe to run any number of times.

Redelivery is normal (a task that outlives Redis' visibility timeout, a killed worker), so the
batch first claims its rows (counting attempts, giving up past the cap into the failures table),
adopts points that a previous delivery already stored, and encodes only what is left.

A first delivery claims all its fresh rows at once and encodes them in whole encoder batches.
A row that was already claimed (``attempts > 0``) comes back only because the delivery that
claimed it did not finish: its process died (SIGKILL, segfault, OOM) or lost the catalog. One
image that kills the process must not take its whole batch with it, so such suspects are
isolated: each is claimed (state ``processing``, ``attempts + 1``, committed) just before its
own encode and finished on its own. A process that dies then leaves the extra attempt on the
one image that was in flight, and only that image reaches the cap and is dead-lettered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, IndexVersion, utcnow
from core.runtime import Runtime, UnknownIndexVersion
from ingest.pipeline import Pipeline, WorkItem, work_items
from ingest.records import adopt_stored, fail_live_paths

log = logging.getLogger(__name__)

OPEN_STATES = (AssetState.PENDING, AssetState.QUEUED, AssetState.PROCESSING)
STAGE_WORKER = "worker"  # the failure stage of a dead-lettered asset (not a bad file)

# Called with each group of work items just before the pipeline takes it (an encoder batch on
# the normal path, one item when isolating). Used by the worker's fault-injection hook.
BeforeEncode = Callable[[Sequence[WorkItem]], None]


@dataclass(slots=True)
class BatchOutcome:
    claimed: int = 0
    encoded: int = 0
    reused: int = 0
    failed: int = 0
    gave_up: int = 0
    skipped: int = 0  # already indexed or failed: a duplicate delivery
    isolated: int = 0  # suspects of a dead delivery, encoded one at a time

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def gave_up_reason(row: AssetIndexState) -> str:
    """Why an asset at the attempt cap is dead-lettered. A row still ``processing`` was in
    flight in every delivery that counted an attempt and none of them finished: the worker
    died on it (or lost the catalog) each time."""
    if row.state == AssetState.PROCESSING:
        return (
            f"gave up after {row.attempts} attempts: the worker died while processing this "
            f"image {row.attempts} times"
        )
    return f"gave up after {row.attempts} attempts"


def index_assets(
    runtime: Runtime,
    version_id: int,
    asset_ids: Sequence[str],
    before_encode: BeforeEncode | None = None,
) -> BatchOutcome:
    """Index ``asset_ids`` into the collection of ``version_id``, the version the message names
    (never the process's idea of the live one), with the model that builds that version
    (``runtime.encoder_for``: a reindex's new model while the live one keeps its own).

    A version that was dropped meanwhile has no rows and no collection left: the batch is
    skipped with a log line. A retired version (after a swap) still has its own rows and
    collection, and its work goes there, never into another version's collection."""
    outcome = BatchOutcome()
    try:
        version = runtime.version(version_id)
    except UnknownIndexVersion:
        log.warning("index version %d was dropped: skipping %d assets", version_id, len(asset_ids))
        outcome.skipped = len(asset_ids)
        return outcome
    fresh, suspects = _claim(runtime, version_id, asset_ids, outcome)
    if fresh:
        _encode(runtime, version, fresh, outcome, before_encode)
    for item in suspects:  # fewest attempts first: the likely innocent finish before a culprit
        if _claim_one(runtime, version_id, item.asset_id, outcome):
            outcome.isolated += 1
            _encode(runtime, version, [item], outcome, before_encode)
    return outcome


def _claim(
    runtime: Runtime, version_id: int, asset_ids: Sequence[str], outcome: BatchOutcome
) -> tuple[list[WorkItem], list[WorkItem]]:
    """Claim the fresh rows (attempt counted now, for all of them) and find the suspects (rows
    an unfinished delivery claimed; each is counted when it is really in flight)."""
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
        fresh: set[str] = set()
        attempts: dict[str, int] = {}
        for row in rows:
            if row.state not in OPEN_STATES:
                outcome.skipped += 1
            elif row.attempts >= cap:
                fail_live_paths(session, row.asset_id, STAGE_WORKER, gave_up_reason(row))
                row.state = AssetState.FAILED
                outcome.gave_up += 1
            elif row.attempts == 0:
                row.state = AssetState.PROCESSING
                row.attempts = 1
                row.updated_at = now
                fresh.add(row.asset_id)
                outcome.claimed += 1
            else:
                row.updated_at = now  # not stale for the reconciler while this runs
                attempts[row.asset_id] = row.attempts
        session.commit()
        items = work_items(session, version_id, OPEN_STATES, [*fresh, *attempts])
    suspects = [item for item in items if item.asset_id in attempts]
    suspects.sort(key=lambda item: attempts[item.asset_id])  # stable: path order within
    return [item for item in items if item.asset_id in fresh], suspects


def _claim_one(runtime: Runtime, version_id: int, asset_id: str, outcome: BatchOutcome) -> bool:
    """Mark one suspect in flight (committed before its encode), or dead-letter it at the cap.
    False when it needs no work (done meanwhile by another delivery, or given up)."""
    with runtime.sessions() as session:
        row = session.scalars(
            select(AssetIndexState)
            .where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.asset_id == asset_id,
            )
            .with_for_update()
        ).first()
        if row is None or row.state not in OPEN_STATES:
            outcome.skipped += 1
            return False
        if row.attempts >= runtime.settings.max_attempts:
            fail_live_paths(session, asset_id, STAGE_WORKER, gave_up_reason(row))
            row.state = AssetState.FAILED
            outcome.gave_up += 1
            session.commit()
            return False
        row.state = AssetState.PROCESSING
        row.attempts += 1
        row.updated_at = utcnow()
        session.commit()
    outcome.claimed += 1
    return True


def _encode(
    runtime: Runtime,
    version: IndexVersion,
    items: list[WorkItem],
    outcome: BatchOutcome,
    before_encode: BeforeEncode | None,
) -> None:
    """Adopt what an earlier delivery already stored, encode the rest in encoder batches."""
    index = runtime.index_of(version)
    with runtime.sessions() as session:  # an earlier delivery upserted these, then died
        stored = adopt_stored(session, version.id, index, [item.asset_id for item in items])
        session.commit()
    outcome.reused += len(stored)
    work = [item for item in items if item.asset_id not in stored]
    if not work:
        return
    size = runtime.settings.batch_size
    pipeline = Pipeline(
        runtime.encoder_for(version), index, runtime.sessions, version.id,
        runtime.decode_limits(version), size, runtime.settings.decode_workers,
    )  # fmt: skip
    on_batch = None
    if before_encode is not None:  # the pipeline finishes its batches in this order
        groups = [work[i : i + size] for i in range(0, len(work), size)]
        before_encode(groups[0])
        finished = iter(groups[1:])

        def on_batch(_: int) -> None:
            following = next(finished, None)
            if following is not None:
                before_encode(following)

    result = pipeline.run(work, on_batch)
    outcome.encoded += result.encoded
    outcome.failed += result.failed
