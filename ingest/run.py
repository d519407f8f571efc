"""One ingest run: scan the roots, register changes, remove what vanished, encode what is new.

The roots are the folders named, or every library (``ingest.libraries``); each is scanned with
its library's rules, and a library root that is missing is reported and spared."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from core.catalog.db import REGISTER_LOCK, take_turns
from core.catalog.index_versions import identity_of
from core.catalog.ingest_runs import run_owner
from core.catalog.models import (
    AssetState,
    IndexVersion,
    IngestRun,
    utcnow,
)
from core.diskspace import check_free_space, write_paths
from core.images import STAGE_READ
from core.runtime import Runtime
from core.settings import Settings
from core.store import VectorIndex
from ingest.building import mirror_to_building
from ingest.failures import clear_resolved, retry_unreadable
from ingest.forget import refresh_payloads, remove_orphans
from ingest.graph import build_search_graph
from ingest.libraries import ScanPlan, own_folders, plan_scans, record_scans
from ingest.pipeline import Pipeline, StageTimes, work_items
from ingest.queueing import SendBatch, enqueue_pending
from ingest.records import adopt_stored, record_failures
from ingest.register import register
from ingest.scan import FoundFile, ScanTally, scan

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the run reports while it works; the CLI draws a bar from it."""

    def phase(self, name: str, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


class _Silent:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass


@dataclass(slots=True)
class IngestReport:
    scanned: int = 0
    new: int = 0
    modified: int = 0
    unchanged: int = 0
    moved: int = 0
    duplicates: int = 0
    encoded: int = 0
    reused: int = 0  # pending assets whose point was already stored (a resumed run)
    queued: int = 0  # sent to workers (distributed ingest)
    failed: int = 0
    removed: int = 0
    ignored: int = 0  # not images by extension: videos, RAW, anything else
    skipped: int = 0  # symlinks and special files
    excluded: int = 0  # hidden, system folders, excludes (a folder counts once)
    missing_roots: list[str] = field(default_factory=list)  # library roots not there: kept
    seconds: float = 0.0
    model: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def ingest(
    runtime: Runtime,
    paths: Sequence[Path],
    progress: Progress | None = None,
    dispatch: SendBatch | None = None,
    build_index: bool = False,
) -> IngestReport:
    """Scan and register; then encode inline, or with ``dispatch`` hand batches to workers.

    The index version is resolved once here and handed to every stage. Nothing loads the model
    unless something must be encoded, and nothing opens the store unless something changed.
    ``build_index``: after writing vectors, build the embedded store's search graph (the CLI,
    which holds the store alone; never a server, see ``ingest.graph``)."""
    with runtime.ingest_lock:  # a server's jobs, scans and watch loop take turns
        return _ingest(runtime, paths, progress or _Silent(), dispatch, build_index)


def _ingest(
    runtime: Runtime,
    paths: Sequence[Path],
    progress: Progress,
    dispatch: SendBatch | None,
    build_index: bool = False,
) -> IngestReport:
    started = time.perf_counter()
    with runtime.sessions() as session:
        plan = plan_scans(session, paths, own_folders(runtime.settings))
    settings = runtime.settings
    check_free_space(_write_paths(settings), settings.min_free_bytes)  # before any write
    if dispatch is None:
        # Inline work needs the store: take it (the embedded store's lock, cheap; no collection
        # is loaded) before registering anything, so a refused run leaves no trace.
        _ = runtime.store
    version = runtime.live_version()
    report = IngestReport(model=identity_of(version).label)
    report.missing_roots = [str(root) for root in plan.missing]
    with runtime.sessions() as session:
        run = IngestRun(roots=[str(r) for r in plan.roots], counts=run_owner())
        session.add(run)
        session.commit()
        run_id = run.id
    try:
        report = _run(runtime, plan, version, report, run_id, progress, dispatch, started)
    except BaseException as error:  # a refused or crashed run says so instead of "running"
        _abort_run(runtime.sessions, run_id, error)
        raise
    wrote = report.encoded or report.removed or report.reused  # reused: a resumed run
    if build_index and dispatch is None and wrote:
        build_search_graph(runtime.index_of(version), progress)
        report.seconds = round(time.perf_counter() - started, 3)
    return report


def _run(
    runtime: Runtime,
    plan: ScanPlan,
    version: IndexVersion,
    report: IngestReport,
    run_id: int,
    progress: Progress,
    dispatch: SendBatch | None,
    started: float,
) -> IngestReport:
    space = _write_paths(runtime.settings)
    tally = ScanTally()
    found, per_library = _scan_all(plan, tally)
    report.scanned, report.ignored, report.skipped = len(found), tally.ignored, tally.skipped
    report.excluded = tally.excluded + plan.excluded

    def index() -> VectorIndex:
        return runtime.index_of(version)

    with runtime.sessions() as session:
        # Two ingests over the same files at once would both insert them: on a shared
        # PostgreSQL catalog they take turns, each planning from what the other committed.
        take_turns(session, REGISTER_LOCK, _say_waiting)
        progress.phase("hashing", len(found))
        spared = [*plan.spared, *tally.unlisted]  # an unreadable folder is not a deleted one
        registered = register(
            session, version.id, plan.roots, found, runtime.settings.decode_workers,
            progress.advance, spared=spared,
        )  # fmt: skip
        failing = [*tally.unreadable, *registered.failed_read]
        clear_resolved(session, plan.roots, spared, {path for path, _ in failing})
        record_failures(  # one statement per chunk, not per file (20k unreadable files)
            session, [(path, STAGE_READ, reason, None) for path, reason in failing]
        )
        retry_unreadable(session, version.id, _PathsOf(found))
        report.removed = remove_orphans(session, version.id, index, registered.orphaned)
        mirror_to_building(session, version.id, runtime.index_of, registered.orphaned)
        refresh_payloads(session, version.id, index, registered.touched)
        record_scans(session, plan, per_library)
        session.commit()
    for name in ("new", "modified", "unchanged", "moved", "duplicates"):
        setattr(report, name, getattr(registered, name))
    report.failed += len(tally.unreadable) + len(registered.failed_read)

    if dispatch is not None:
        report.queued = enqueue_pending(
            runtime.sessions, version.id, dispatch, runtime.settings.task_batch_size
        )
        report.seconds = round(time.perf_counter() - started, 3)
        _finish_run(runtime.sessions, run_id, report, StageTimes())
        return report

    with runtime.sessions() as session:
        work = work_items(session, version.id, [AssetState.PENDING])
    times = StageTimes()
    if work:
        with runtime.sessions() as session:
            adopted = adopt_stored(session, version.id, index(), [item.asset_id for item in work])
            session.commit()
        report.reused = len(adopted)
        work = [item for item in work if item.asset_id not in adopted]
    if work:
        progress.phase("encoding", len(work))
        pipeline = Pipeline(
            runtime.encoder_for(version),  # a server that followed a swap: the new model
            index(),
            runtime.sessions,
            version.id,
            runtime.decode_limits(version),
            runtime.settings.batch_size,
            runtime.settings.decode_workers,
            before_write=lambda: check_free_space(space, runtime.settings.min_free_bytes),
            decode_pool=runtime.settings.decode_pool,
        )
        outcome = pipeline.run(work, progress.advance)
        report.encoded = outcome.encoded
        report.failed += outcome.failed
        times = outcome.times
    report.seconds = round(time.perf_counter() - started, 3)
    _finish_run(runtime.sessions, run_id, report, times)
    return report


def _scan_all(
    plan: ScanPlan, tally: ScanTally
) -> tuple[list[FoundFile], dict[int, dict[str, int]]]:
    """Every scan of the plan; the counts of each library scanned whole, by its id."""
    found: list[FoundFile] = []
    per_library: dict[int, dict[str, int]] = {}
    for root, rules, library_id in plan.scans:
        own = ScanTally()
        before = len(found)
        found.extend(scan(root, own, rules))
        tally.ignored += own.ignored
        tally.skipped += own.skipped
        tally.excluded += own.excluded
        tally.unreadable.extend(own.unreadable)
        tally.unlisted.extend(own.unlisted)
        if library_id is not None:
            per_library[library_id] = {
                "scanned": len(found) - before, "ignored": own.ignored, "skipped": own.skipped,
                "excluded": own.excluded, "unreadable": len(own.unreadable),
            }  # fmt: skip
    return found, per_library


class _PathsOf:
    """``path in found`` over the scan's files, with the set built only when first asked (a
    rescan of a million unchanged files usually has no unreadable failure to look up)."""

    def __init__(self, found: Sequence[FoundFile]) -> None:
        self._found = found
        self._paths: set[str] | None = None

    def __contains__(self, path: object) -> bool:
        if self._paths is None:
            self._paths = {item.path for item in self._found}
        return path in self._paths

    def __len__(self) -> int:
        return len(self._found)

    def __iter__(self) -> Iterator[str]:
        return (item.path for item in self._found)


def _write_paths(settings: Settings) -> list[Path]:
    return write_paths(settings.home, settings.blobs, settings.catalog_url)


def _say_waiting() -> None:
    log.warning("another ingest is registering files in this catalog; waiting for it to finish")


def _abort_run(sessions: sessionmaker[Session], run_id: int, error: BaseException) -> None:
    try:
        with sessions() as session:
            run = session.get(IngestRun, run_id)
            if run is not None:
                run.status = "failed"
                run.finished_at = utcnow()
                run.counts = {"error": f"{type(error).__name__}: {error}"[:1000]}
                session.commit()
    except Exception:  # the catalog itself may be what failed; the original error matters more
        log.warning("could not mark ingest run %d as failed", run_id, exc_info=True)


def _finish_run(
    sessions: sessionmaker[Session], run_id: int, report: IngestReport, times: StageTimes
) -> None:
    with sessions() as session:
        run = session.get(IngestRun, run_id)
        if run is not None:
            run.status = "done"
            run.finished_at = utcnow()
            run.seconds = report.seconds
            run.counts = {**report.as_dict(), "stage_seconds": asdict(times)}
            session.commit()
