"""Ingesting a manifest: register every usable row, give each its metadata, then encode
through the same dispatch as folders and uploads (inline, or workers through the outbox).

Local files are registered by the ordinary folder ingest (a file is a root of its own, so
moves, changes and failures behave exactly as for folders); URLs are downloaded
(:mod:`ingest.fetch`) and stored by content like uploads. Registration marks the work queued
without sending it, metadata is merged into the catalog, and only then is the work encoded or
sent, so every point is written with its metadata. Points already stored get their payload
rewritten instead. Bad rows are recorded as failures under ``MANIFEST:LINE`` (stage
``manifest``), replacing those of the previous run of the same manifest; the rest go on.
Running the same manifest again registers, downloads into and encodes nothing new.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import delete, select

from core.catalog.batching import chunked
from core.catalog.models import Failure, Job, JobAsset, Location
from core.images import IMAGE_EXTENSIONS, ImageRejected, identify
from core.runtime import Runtime
from ingest.batch import index_assets
from ingest.fetch import FetchPolicy, FetchRefused, fetch
from ingest.forget import forget_paths
from ingest.manifest import BadRow, Manifest, Row, read_manifest
from ingest.metadata import Metadata, apply_metadata, refresh_payloads
from ingest.queueing import SendBatch, queue_pending, send_claimed
from ingest.records import record_failures
from ingest.run import Progress, ingest
from ingest.uploads import keep_bytes

STAGE_MANIFEST = "manifest"
JOB_KIND = "manifest"  # ingest.payload names a downloaded URL's asset from these jobs
ROOTS_PER_RUN = 500  # local files registered per folder-ingest call (bounds its root clauses)
DOWNLOADS_AT_ONCE = 8


@dataclass(slots=True)
class ManifestReport:
    manifest: str
    rows: int = 0
    files: int = 0
    urls: int = 0
    new: int = 0
    unchanged: int = 0
    duplicates: int = 0
    tagged: int = 0  # assets whose metadata changed
    encoded: int = 0
    reused: int = 0
    queued: int = 0  # sent to workers
    failed: int = 0  # bad rows, plus images that failed to decode
    removed: int = 0  # rows whose file, indexed before, is gone: its path left the index
    bad_rows: list[dict[str, object]] = field(default_factory=list)  # line, reason
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Collect:
    """A ``SendBatch`` that keeps the ids instead of sending them (queued in the catalog)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, version_id: int, asset_ids: list[str]) -> None:
        self.ids.extend(asset_ids)


def ingest_manifest(
    runtime: Runtime,
    path: Path,
    policy: FetchPolicy,
    progress: Progress | None = None,
    dispatch: SendBatch | None = None,
) -> ManifestReport:
    started = time.perf_counter()
    manifest = read_manifest(path)
    report = ManifestReport(str(manifest.path), rows=len(manifest.rows) + len(manifest.bad))
    if dispatch is None:
        _ = runtime.store  # inline work needs the store: refuse before registering anything
    version = runtime.live_version()
    bad = list(manifest.bad)
    files = [row for row in manifest.rows if not row.is_url]
    urls = [row for row in manifest.rows if row.is_url]
    report.files, report.urls = len(files), len(urls)
    assets = _downloaded_before(runtime, urls)  # line -> asset id
    report.unchanged += len(assets)
    urls = [row for row in urls if row.line not in assets]
    for row, outcome in zip(urls, _download_all(runtime, urls, policy), strict=True):
        if isinstance(outcome, str):
            bad.append(BadRow(row.line, f"{row.source[:300]}: {outcome}"))
            continue
        asset_id, created = keep_bytes(runtime, version.id, outcome)
        assets[row.line] = asset_id
        report.new += created
        report.duplicates += not created
    collect = _Collect()
    usable = _register_files(runtime, files, bad, report, progress, collect)
    if not usable:  # no folder ingest ran: queue what the downloads registered
        queue_pending(runtime.sessions, version.id, collect, runtime.settings.task_batch_size)
    found = _assets_at(runtime, files)
    assets.update(found)
    reported = {row.line for row in bad}
    bad += [  # given to the scan, yet not registered: unreadable (see its failure) or excluded
        BadRow(row.line, f"not indexed: {row.source}")
        for row in files
        if row.line not in found and row.line not in reported
    ]
    report.tagged = _tag(runtime, manifest, assets)
    _record_job(runtime, version.id, manifest, assets)
    _record_bad(runtime, manifest, bad, report)
    _encode_or_send(runtime, version.id, sorted(set(collect.ids)), report, progress, dispatch)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _downloaded_before(runtime: Runtime, rows: Sequence[Row]) -> dict[int, str]:
    """line -> asset id of each URL an earlier manifest run downloaded and still holds."""
    by_url: dict[str, str] = {}
    blobs = f"{runtime.settings.blobs}/"
    with runtime.sessions() as session:
        for chunk in chunked(sorted({row.source for row in rows})):
            query = (
                select(JobAsset.filename, JobAsset.asset_id)
                .join(Job, Job.id == JobAsset.job_id)
                .join(Location, Location.asset_id == JobAsset.asset_id)
                .where(
                    Job.kind == JOB_KIND,
                    JobAsset.filename.in_(chunk),
                    Location.missing.is_(False),
                    Location.path.startswith(blobs, autoescape=True),
                )
            )
            by_url.update((url, asset_id) for url, asset_id in session.execute(query))
    return {row.line: by_url[row.source] for row in rows if row.source in by_url}


def _record_job(
    runtime: Runtime, version_id: int, manifest: Manifest, assets: dict[int, str]
) -> None:
    """A job per run (``clipdex jobs`` follows it), naming each asset by its row's source."""
    sources = {row.line: row.source for row in manifest.rows}
    names: dict[str, str] = {}
    for line, asset_id in sorted(assets.items()):
        names.setdefault(asset_id, sources[line])
    if not names:
        return
    with runtime.sessions() as session:
        job_id = str(uuid.uuid4())
        meta = {"manifest": str(manifest.path)}
        session.add(Job(id=job_id, kind=JOB_KIND, index_version_id=version_id, meta=meta))
        session.flush()
        session.add_all(JobAsset(job_id=job_id, asset_id=a, filename=n) for a, n in names.items())
        session.commit()


def _download_all(runtime: Runtime, rows: Sequence[Row], policy: FetchPolicy) -> list[bytes | str]:
    """Each URL's bytes (checked to be an image), or the reason it cannot be used."""
    limits = runtime.decode_limits()

    def one(row: Row) -> bytes | str:
        try:
            data = fetch(row.source, policy)
            identify(data, limits)
        except FetchRefused as error:
            return str(error)
        except ImageRejected as rejected:
            return f"not a usable image: {rejected.reason}"
        return data

    with ThreadPoolExecutor(DOWNLOADS_AT_ONCE) as pool:
        return list(pool.map(one, rows))


def _register_files(
    runtime: Runtime,
    rows: Sequence[Row],
    bad: list[BadRow],
    report: ManifestReport,
    progress: Progress | None,
    collect: _Collect,
) -> int:
    """Register the local files (the folder ingest, queued into ``collect``); a row whose file
    is missing is a bad row. Returns how many files were given to the folder ingest."""
    paths: list[Path] = []
    gone: list[str] = []
    folders: dict[Path, bool] = {}
    for row in rows:
        path = Path(row.source)
        if not path.is_file():
            what = "not a file" if path.exists() else "no such file"
            bad.append(BadRow(row.line, f"{what}: {row.source}"))
            if _folder_there(path.parent, folders):  # a deleted file, not an unmounted share
                gone.append(row.source)
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            bad.append(BadRow(row.line, f"not an image file name: {row.source}"))
        else:
            paths.append(path)
    report.removed += forget_paths(runtime, gone)  # indexed before, deleted since
    unique = sorted(set(paths))
    for start in range(0, len(unique), ROOTS_PER_RUN):
        run = ingest(runtime, unique[start : start + ROOTS_PER_RUN], progress, collect)
        report.new += run.new + run.modified
        report.unchanged += run.unchanged + run.moved
        report.duplicates += run.duplicates
        report.failed += run.failed
    return len(unique)


def _folder_there(folder: Path, seen: dict[Path, bool]) -> bool:
    """A folder that exists and holds something (an unmounted share's mount point is empty),
    asked once per folder."""
    if folder not in seen:
        try:
            seen[folder] = folder.is_dir() and any(folder.iterdir())
        except OSError:
            seen[folder] = False
    return seen[folder]


def _assets_at(runtime: Runtime, rows: Sequence[Row]) -> dict[int, str]:
    """line -> asset id of each local row whose file is now registered."""
    by_path: dict[str, str] = {}
    with runtime.sessions() as session:
        for chunk in chunked(sorted({row.source for row in rows})):
            query = select(Location.path, Location.asset_id).where(
                Location.path.in_(chunk), Location.missing.is_(False)
            )
            by_path.update((path, asset_id) for path, asset_id in session.execute(query))
    return {row.line: by_path[row.source] for row in rows if row.source in by_path}


def _tag(runtime: Runtime, manifest: Manifest, assets: dict[int, str]) -> int:
    """Merge each row's metadata into its asset's (rows for the same asset, in line order)."""
    changes: dict[str, Metadata] = {}
    for row in manifest.rows:
        if row.line in assets and row.meta:
            changes.setdefault(assets[row.line], {}).update(row.meta)
    with runtime.sessions() as session:
        changed = apply_metadata(session, changes)
        session.commit()
    if changed:
        refresh_payloads(runtime, changed)  # points already stored; new ones read the catalog
    return len(changed)


def _record_bad(
    runtime: Runtime, manifest: Manifest, bad: list[BadRow], report: ManifestReport
) -> None:
    prefix = f"{manifest.path}:"
    bad.sort(key=lambda row: row.line)
    with runtime.sessions() as session:
        session.execute(  # the previous run's bad rows of this manifest
            delete(Failure).where(
                Failure.stage == STAGE_MANIFEST,
                Failure.path.startswith(prefix, autoescape=True),
            )
        )
        record_failures(
            session, [(f"{prefix}{row.line}", STAGE_MANIFEST, row.reason, None) for row in bad]
        )
        session.commit()
    report.bad_rows = [{"line": row.line, "reason": row.reason} for row in bad]
    report.failed += len(bad)


def _encode_or_send(
    runtime: Runtime,
    version_id: int,
    ids: list[str],
    report: ManifestReport,
    progress: Progress | None,
    dispatch: SendBatch | None,
) -> None:
    """The queued work, now that it has its metadata: encoded here, or sent to the workers as
    with folders (a failed send stays queued for the reconciler; a refused one ends the run
    and its rows go back to pending)."""
    if not ids:
        return
    if dispatch is not None:
        batch = runtime.settings.task_batch_size
        report.queued += send_claimed(runtime.sessions, dispatch, version_id, ids, batch)
        return
    if progress is not None:
        progress.phase("encoding", len(ids))
    for chunk in chunked(ids, runtime.settings.batch_size * 8):
        outcome = index_assets(runtime, version_id, chunk)
        report.encoded += outcome.encoded
        report.reused += outcome.reused
        report.failed += outcome.failed
        if progress is not None:
            progress.advance(len(chunk))
