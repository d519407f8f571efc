"""Reindex: build a new index version for another model from the catalog, while the live one
keeps serving; then, once it holds exactly what the live one holds, make it live.

Everything is decided from the catalog and the store, so a run killed at any point (kill -9)
resumes where it stopped: the ``building`` version for the same model is adopted, points it
already stored are adopted (not encoded again), and only what is still pending is encoded.
The caller passes everything in (encoder, decode limits, batch sizes); nothing here reads
settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.index_versions import (
    active_index,
    new_building_version,
    version_for_identity,
)
from core.catalog.models import (
    AssetIndexState,
    AssetState,
    IndexVersion,
    Location,
    VersionState,
)
from core.encoder import Encoder
from core.images import DecodeLimits
from core.runtime import Runtime
from ingest.activation import activate_synced
from ingest.building import add_pending
from ingest.graph import build_search_graph
from ingest.pipeline import Pipeline, work_items
from ingest.queueing import SendBatch, SendRefused, queue_pending, reconcile
from ingest.records import adopt_stored
from ingest.run import Progress

log = logging.getLogger(__name__)

OPEN = (AssetState.PENDING, AssetState.QUEUED, AssetState.PROCESSING)
MAX_CATCH_UP_PASSES = 20


class _Silent:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass


class ReindexRefused(RuntimeError):
    """Nothing to reindex from, or the model asked for is the live one already."""


@dataclass(slots=True)
class ReindexReport:
    version: int = 0
    collection: str = ""
    model: str = ""
    resumed: bool = False
    registered: int = 0
    queued: int = 0  # sent to workers (``plan.send``)
    encoded: int = 0  # with workers: assets they finished (their logs split encoded/reused)
    reused: int = 0
    failed: int = 0
    removed: int = 0
    catch_up_passes: int = 0
    indexed: int = 0
    points: int = 0
    state: str = ""
    swapped: bool = False
    previous: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Workers:
    """Encode through workers: the outbox sends batches naming the version; the run waits for
    its rows to settle and sends again what stalls longer than ``reconcile_after`` seconds."""

    send: SendBatch
    task_batch_size: int
    reconcile_after: float
    poll_seconds: float = 1.0
    retry_seconds: float = 30.0  # a broker that refused a send after the first is tried again


@dataclass(frozen=True, slots=True)
class ReindexPlan:
    """What a run needs besides the kernel: the new model and how to feed it (inline, or
    through ``workers``)."""

    encoder: Encoder
    limits: DecodeLimits
    batch_size: int
    decode_workers: int
    swap: bool = True
    before_write: Callable[[], None] | None = None
    workers: Workers | None = None
    build_index: bool = False  # build the search graph before the swap (see ingest.graph)


def reindex(runtime: Runtime, plan: ReindexPlan, progress: Progress | None = None) -> ReindexReport:
    """Build (or resume) the version for ``plan.encoder``'s model, catch it up with the live
    one until they agree, mark it ready and, when ``plan.swap``, activate it."""
    progress = progress or _Silent()
    started = time.perf_counter()
    identity = plan.encoder.identity  # loads the new model: its identity names the collection
    report = ReindexReport(model=identity.label)
    with runtime.sessions() as session:
        live = active_index(session)
        if live is None:
            raise ReindexRefused("nothing has been ingested yet: there is nothing to reindex")
        version = version_for_identity(session, identity)
        if version is not None and version.active:
            raise ReindexRefused(
                f"{identity.label} is the live index already (version {version.id})"
            )
        if version is None:
            version = new_building_version(session, identity)
        else:
            report.resumed = version.state == VersionState.BUILDING
            version.state = VersionState.BUILDING
        session.commit()
    report.version, report.collection = version.id, version.collection
    index = runtime.index_of(version)

    with runtime.sessions() as session:
        report.registered = _register_live_assets(session, version.id)
        session.commit()

    pipeline = Pipeline(
        plan.encoder, index, runtime.sessions, version.id, plan.limits, plan.batch_size,
        plan.decode_workers, before_write=plan.before_write,
    )  # fmt: skip
    while True:
        report.catch_up_passes += 1
        with runtime.sessions() as session:
            live = active_index(session)
            assert live is not None
            added, removed = _catch_up(session, live.id, version.id, index.delete)
            session.commit()
            work = work_items(session, version.id, list(OPEN))
        report.removed += removed
        reused = 0
        if work:
            with runtime.sessions() as session:
                adopted = adopt_stored(session, version.id, index, [w.asset_id for w in work])
                session.commit()
            reused = len(adopted)
            work = [item for item in work if item.asset_id not in adopted]
        report.reused += reused
        if work:
            phase = "reindexing" if report.catch_up_passes == 1 else "catching up"
            progress.phase(phase, len(work))
            if plan.workers is None:
                outcome = pipeline.run(work, progress.advance)
                report.encoded += outcome.encoded
                report.failed += outcome.failed
            else:
                _through_workers(runtime, version.id, plan.workers, progress, report)
        if not work and not added and not removed and not reused:
            break
        if report.catch_up_passes >= MAX_CATCH_UP_PASSES:
            raise ReindexRefused(
                "the library keeps changing faster than the reindex catches up; run it again"
            )

    if plan.build_index:  # searches on the new version are fast from the swap on
        build_search_graph(index, progress)
    with runtime.sessions() as session:
        fresh = session.get(IndexVersion, version.id)
        assert fresh is not None
        fresh.state = VersionState.READY
        session.commit()
        report.indexed = _indexed_count(session, version.id)
    report.points = index.count()
    report.state = VersionState.READY
    if plan.swap:
        new, old = activate_synced(runtime, version.id, caught_up=True)
        report.state, report.swapped = new.state, True
        report.previous = old.id if old is not None else None
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _through_workers(
    runtime: Runtime, version_id: int, workers: Workers, progress: Progress, report: ReindexReport
) -> None:
    """Send the version's pending rows to the workers (outbox) and wait until none is pending,
    queued or processing. Pending rows that appear meanwhile (an ingest writing to the building
    version) are sent too; rows stuck past the deadline (a lost broker, a killed earlier run)
    are sent again.

    A broker that refuses the very first send ends the run at once (:class:`SendRefused`;
    running it again resumes). One that refuses a later send does not: the refused rows are
    back to pending, the workers go on with what they hold, and the rows are sent again every
    ``workers.retry_seconds`` until the broker takes them."""
    before = _counts(runtime, version_id)
    left = sum(before.get(state, 0) for state in OPEN)
    last_progress = time.monotonic()
    refused_at: float | None = None
    sent_any = False

    def send(version: int, ids: list[str]) -> None:
        nonlocal sent_any
        workers.send(version, ids)
        sent_any = True

    while left:
        try:
            if refused_at is None or time.monotonic() - refused_at >= workers.retry_seconds:
                refused_at = None
                if _counts(runtime, version_id).get(AssetState.PENDING, 0):
                    batch = workers.task_batch_size
                    report.queued += queue_pending(runtime.sessions, version_id, send, batch).queued
        except SendRefused as error:
            if not (sent_any or report.queued):  # nothing of this run reached the workers yet
                raise
            refused_at = _refused(error, workers.retry_seconds)
        time.sleep(workers.poll_seconds)
        counts = _counts(runtime, version_id)
        now_left = sum(counts.get(state, 0) for state in OPEN)
        if now_left < left:
            progress.advance(left - now_left)
            last_progress = time.monotonic()
        elif refused_at is None and time.monotonic() - last_progress > workers.reconcile_after:
            age = timedelta(seconds=workers.reconcile_after)
            try:
                reconcile(runtime.sessions, version_id, send, age, workers.task_batch_size)
            except SendRefused as error:  # what it could not send is pending again
                refused_at = _refused(error, workers.retry_seconds)
            last_progress = time.monotonic()
        left = now_left
    after = _counts(runtime, version_id)
    for field, state in (("encoded", AssetState.INDEXED), ("failed", AssetState.FAILED)):
        grown = after.get(state, 0) - before.get(state, 0)
        setattr(report, field, getattr(report, field) + max(grown, 0))


def _refused(error: SendRefused, retry_seconds: float) -> float:
    """Say that the broker refused a send and when it is tried again; returns now."""
    log.warning(
        "%s; the reindex goes on waiting for the workers and sends the rest again in %.0f s "
        "(Ctrl-C stops it; running it again resumes)",
        str(error).split("; ")[0], retry_seconds,
    )  # fmt: skip
    return time.monotonic()


def _counts(runtime: Runtime, version_id: int) -> dict[str, int]:
    with runtime.sessions() as session:
        rows = session.execute(
            select(AssetIndexState.state, func.count())
            .where(AssetIndexState.index_version_id == version_id)
            .group_by(AssetIndexState.state)
        )
        return {state: int(count) for state, count in rows}


def _register_live_assets(session: Session, version_id: int) -> int:
    """Every asset with a live path gets a ``pending`` row for the new version (once)."""
    live_assets = set(
        session.scalars(select(Location.asset_id).where(Location.missing.is_(False)).distinct())
    )
    known = set(
        session.scalars(
            select(AssetIndexState.asset_id).where(AssetIndexState.index_version_id == version_id)
        )
    )
    return add_pending(session, version_id, live_assets - known)


def _states(session: Session, version_id: int) -> dict[str, str]:
    rows = session.execute(
        select(AssetIndexState.asset_id, AssetIndexState.state).where(
            AssetIndexState.index_version_id == version_id
        )
    )
    return {asset_id: state for asset_id, state in rows}


def _catch_up(
    session: Session, live_id: int, new_id: int, delete_points: Callable[[list[str]], None]
) -> tuple[int, int]:
    """Bring the new version's rows in line with the live one's: assets the live one holds or
    is working on (an upload in flight) but unknown to the new version become pending; assets
    the new version has but the live one no longer has leave it (points and rows). An asset
    the live model failed on stays (the new model may read it). Failures stay recorded."""
    live_states = _states(session, live_id)
    live = {a for a, state in live_states.items() if state != AssetState.FAILED}
    new = _states(session, new_id)
    add_pending(session, new_id, live - set(new))
    stale = sorted(
        a for a, state in new.items() if a not in live_states and state != AssetState.FAILED
    )
    for chunk in chunked(stale):
        delete_points(list(chunk))
        session.execute(
            delete(AssetIndexState).where(
                AssetIndexState.index_version_id == new_id, AssetIndexState.asset_id.in_(chunk)
            )
        )
    return len(live - set(new)), len(stale)


def _indexed_count(session: Session, version_id: int) -> int:
    return sum(1 for state in _states(session, version_id).values() if state == AssetState.INDEXED)
