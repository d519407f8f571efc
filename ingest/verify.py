"""Verify and repair: compare the catalog (the source of truth) with one index version's
collection, and fix what disagrees.

Drift kinds: indexed assets with no point, points with no live asset, payloads that disagree
with the catalog, vectors of the wrong dimension (sampled), rows stuck in queued/processing past
the reconcile deadline, and upload blobs whose file is gone. Every pass pages through the
catalog by key and through the store with ``iter_ids``, so memory stays bounded by one page
whatever the library's size; a report keeps counts and a few sample ids per kind.

A point whose asset is pending, queued or processing is work in flight (a killed run's point is
adopted by the next run), not an orphan; only points with no state row in this version, or a
failed one, are orphans.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.batching import IN_CLAUSE_SIZE, chunked
from core.catalog.models import AssetIndexState, AssetState, IndexVersion, Location, utcnow
from core.encoder import Encoder
from core.images import STAGE_READ, DecodeLimits
from core.store.base import Payload, VectorIndex
from ingest.payload import payloads_for
from ingest.pipeline import Pipeline, work_items
from ingest.queueing import SendBatch, enqueue_pending
from ingest.records import adopt_stored, record_failure, set_states

SAMPLE = 5  # ids shown per kind
DIM_SAMPLE = 8  # points whose vectors are read back to check the dimension
ENCODE_PAGE = 2048  # pending assets handed to one pipeline run
KINDS = (
    "missing_points",
    "orphan_points",
    "stale_payloads",
    "wrong_dimension",
    "stuck",
    "missing_blobs",
)
IN_FLIGHT = (AssetState.PENDING, AssetState.QUEUED, AssetState.PROCESSING, AssetState.INDEXED)
BLOB_GONE = "upload blob is gone from the blob root; upload the image again"

Sessions = sessionmaker[Session]


@dataclass(slots=True)
class Finding:
    count: int = 0
    sample: list[str] = field(default_factory=list)

    def add(self, ids: Iterable[str]) -> None:
        for item in ids:
            self.count += 1
            if len(self.sample) < SAMPLE:
                self.sample.append(item)


@dataclass(slots=True)
class VerifyReport:
    version: int
    collection: str
    dim: int
    indexed: int = 0
    points: int = 0
    findings: dict[str, Finding] = field(default_factory=lambda: {k: Finding() for k in KINDS})

    @property
    def clean(self) -> bool:
        return not any(finding.count for finding in self.findings.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "collection": self.collection,
            "dim": self.dim,
            "indexed": self.indexed,
            "points": self.points,
            "clean": self.clean,
            "drift": {kind: asdict(finding) for kind, finding in self.findings.items()},
        }


@dataclass(frozen=True, slots=True)
class Checks:
    """What verify needs besides the catalog and the collection (resolved from settings)."""

    stuck_after: timedelta
    blob_root: Path


@dataclass(frozen=True, slots=True)
class Encoding:
    """How repair encodes pending assets inline (the version's model and limits)."""

    encoder: Encoder
    limits: DecodeLimits
    batch_size: int
    workers: int
    before_write: Callable[[], None] | None = None


@dataclass(slots=True)
class RepairReport:
    missing_points: int = 0  # set back to pending
    orphan_points: int = 0  # deleted from the collection
    stale_payloads: int = 0  # rewritten from the catalog
    stuck: int = 0  # set back to pending
    missing_blobs: int = 0  # locations marked missing, with a failure row
    unindexed: int = 0  # assets left with no live path by a missing blob: point deleted, failed
    reused: int = 0  # pending assets whose point was already stored
    encoded: int = 0
    failed: int = 0
    queued: int = 0  # sent to workers (CLIPDEX_BROKER_URL)
    wrong_dimension: str | None = None  # not repaired in place: it needs a reindex

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    sessions: Sessions, index: VectorIndex, version: IndexVersion, checks: Checks
) -> VerifyReport:
    """Compare the catalog with ``index`` (the collection of ``version``); changes nothing."""
    report = VerifyReport(version.id, version.collection, version.dim)
    report.points = index.count()
    with sessions() as session:
        report.indexed = _count_state(session, version.id, AssetState.INDEXED)
    found = report.findings
    for missing, stale in _point_pass(sessions, index, version.id):
        found["missing_points"].add(missing)
        found["stale_payloads"].add(stale)
    for orphans in _orphan_pass(sessions, index, version.id):
        found["orphan_points"].add(orphans)
    found["wrong_dimension"].add(_wrong_dimension(index, version.dim))
    for stuck in _stuck_pages(sessions, version.id, utcnow() - checks.stuck_after):
        found["stuck"].add(stuck)
    for gone in _missing_blob_pages(sessions, checks.blob_root):
        found["missing_blobs"].add(path for _, path, _ in gone)
    return report


def repair(
    sessions: Sessions,
    index: VectorIndex,
    version: IndexVersion,
    checks: Checks,
    encoding: Encoding | None,
    send: SendBatch | None = None,
    task_batch_size: int = 256,
) -> RepairReport:
    """Fix every kind of drift :func:`verify` finds, then encode what is pending: through
    ``send`` (the workers, via the outbox) when given, else inline with ``encoding``, else
    leave it pending for the next ingest. A wrong vector dimension is reported, not repaired."""
    report = RepairReport()
    for gone in _missing_blob_pages(sessions, checks.blob_root):
        report.missing_blobs += len(gone)
        report.unindexed += _drop_blobs(sessions, index, version.id, gone)
    for missing, stale in _point_pass(sessions, index, version.id):
        if missing:
            with sessions() as session:
                set_states(session, version.id, missing, AssetState.PENDING)
                session.commit()
            report.missing_points += len(missing)
        if stale:
            index.set_payloads(stale)
            report.stale_payloads += len(stale)
    for orphans in _orphan_pass(sessions, index, version.id):
        if orphans:
            index.delete(orphans)
            report.orphan_points += len(orphans)
    for stuck in _stuck_pages(sessions, version.id, utcnow() - checks.stuck_after):
        with sessions() as session:
            set_states(session, version.id, stuck, AssetState.PENDING)
            session.commit()
        report.stuck += len(stuck)
    if _wrong_dimension(index, version.dim):
        report.wrong_dimension = "vectors of another dimension: reindex this version"
    if send is not None:
        report.queued = enqueue_pending(sessions, version.id, send, task_batch_size)
    elif encoding is not None:
        report.reused, report.encoded, report.failed = encode_pending(
            sessions, index, version.id, encoding
        )
    return report


def sync_payloads(sessions: Sessions, index: VectorIndex, version_id: int) -> int:
    """Rewrite every payload of the version's indexed points that disagrees with the catalog
    (only those); returns how many were rewritten."""
    rewritten = 0
    for _, stale in _point_pass(sessions, index, version_id):
        if stale:
            index.set_payloads(stale)
            rewritten += len(stale)
    return rewritten


def encode_pending(
    sessions: Sessions, index: VectorIndex, version_id: int, encoding: Encoding
) -> tuple[int, int, int]:
    """Encode every pending asset with a live path, a page at a time, as inline ingest does:
    points already stored are adopted first. Returns (reused, encoded, failed)."""
    reused = encoded = failed = 0
    for page in _state_pages(sessions, version_id, (AssetState.PENDING,), ENCODE_PAGE):
        with sessions() as session:
            work = work_items(session, version_id, [AssetState.PENDING], page)
            adopted = adopt_stored(session, version_id, index, [item.asset_id for item in work])
            session.commit()
        reused += len(adopted)
        work = [item for item in work if item.asset_id not in adopted]
        if not work:
            continue
        pipeline = Pipeline(
            encoding.encoder,
            index,
            sessions,
            version_id,
            encoding.limits,
            encoding.batch_size,
            encoding.workers,
            before_write=encoding.before_write,
        )
        outcome = pipeline.run(work)
        encoded += outcome.encoded
        failed += outcome.failed
    return reused, encoded, failed


def _count_state(session: Session, version_id: int, state: str) -> int:
    query = select(func.count()).where(
        AssetIndexState.index_version_id == version_id, AssetIndexState.state == state
    )
    return int(session.scalar(query) or 0)


def _state_pages(
    sessions: Sessions,
    version_id: int,
    states: tuple[str, ...],
    size: int = IN_CLAUSE_SIZE,
    before: datetime | None = None,
) -> Iterator[list[str]]:
    """Asset ids of ``version_id`` in ``states`` (last changed before ``before``), by id, one
    page per session. Keyset paging: changing a yielded page's states is safe."""
    last = ""
    while True:
        query = (
            select(AssetIndexState.asset_id)
            .where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.state.in_(states),
                AssetIndexState.asset_id > last,
            )
            .order_by(AssetIndexState.asset_id)
            .limit(size)
        )
        if before is not None:
            query = query.where(AssetIndexState.updated_at < before)
        with sessions() as session:
            page = list(session.scalars(query))
        if not page:
            return
        yield page
        last = page[-1]


def _point_pass(
    sessions: Sessions, index: VectorIndex, version_id: int
) -> Iterator[tuple[list[str], dict[str, Payload]]]:
    """Per page of indexed assets: those with no point, and the expected payloads of those
    whose stored payload differs (assets with no live path left have no expected payload)."""
    for page in _state_pages(sessions, version_id, (AssetState.INDEXED,)):
        stored = {hit.id: hit.payload for hit in index.retrieve(page)}
        missing = [asset_id for asset_id in page if asset_id not in stored]
        with sessions() as session:
            expected = payloads_for(session, list(stored))
        stale = {key: value for key, value in expected.items() if not _same(stored[key], value)}
        yield missing, stale


def _same(stored: Payload, expected: Payload) -> bool:
    """Payload equality; floats (``mtime``) within a microsecond, since a store may round
    them in its last bits."""
    if stored.keys() != expected.keys():
        return False
    for key, value in expected.items():
        got = stored[key]
        if isinstance(value, float) and isinstance(got, int | float):
            if not math.isclose(got, value, rel_tol=0.0, abs_tol=1e-6):
                return False
        elif got != value:
            return False
    return True


def _orphan_pass(sessions: Sessions, index: VectorIndex, version_id: int) -> Iterator[list[str]]:
    """Per page of stored point ids: those whose asset has no live state in this version.
    The store is scrolled by id, so deleting a yielded page does not disturb the scroll."""
    ids = index.iter_ids()
    while page := list(islice(ids, IN_CLAUSE_SIZE)):
        with sessions() as session:
            known = set(
                session.scalars(
                    select(AssetIndexState.asset_id).where(
                        AssetIndexState.index_version_id == version_id,
                        AssetIndexState.state.in_(IN_FLIGHT),
                        AssetIndexState.asset_id.in_(page),
                    )
                )
            )
        yield [point_id for point_id in page if point_id not in known]


def _wrong_dimension(index: VectorIndex, dim: int) -> list[str]:
    """Ids among the first few points whose stored vector is not ``dim``-dimensional."""
    sample = list(islice(index.iter_ids(), DIM_SAMPLE))
    hits = index.retrieve(sample, with_vectors=True)
    return [hit.id for hit in hits if hit.vector is None or hit.vector.shape != (dim,)]


def _stuck_pages(sessions: Sessions, version_id: int, deadline: datetime) -> Iterator[list[str]]:
    stuck = (AssetState.QUEUED, AssetState.PROCESSING)
    yield from _state_pages(sessions, version_id, stuck, before=deadline)


BlobRow = tuple[int, str, str]  # (location id, path, asset id)


def _missing_blob_pages(sessions: Sessions, blob_root: Path) -> Iterator[list[BlobRow]]:
    """Per page of live locations under the blob root: those whose file is gone."""
    prefix = str(blob_root).rstrip("/") + "/"
    last = 0
    while True:
        query = (
            select(Location.id, Location.path, Location.asset_id)
            .where(
                Location.missing.is_(False),
                Location.path.startswith(prefix, autoescape=True),
                Location.id > last,
            )
            .order_by(Location.id)
            .limit(IN_CLAUSE_SIZE)
        )
        with sessions() as session:
            rows = [(int(i), str(p), str(a)) for i, p, a in session.execute(query)]
        if not rows:
            return
        last = rows[-1][0]
        gone = [row for row in rows if not Path(row[1]).is_file()]
        if gone:
            yield gone


def _drop_blobs(
    sessions: Sessions, index: VectorIndex, version_id: int, gone: list[BlobRow]
) -> int:
    """Mark the locations missing with a failure row; an asset left with no live path leaves
    the collection and becomes failed (search must not answer a path that cannot be served).
    Returns how many assets left the collection."""
    with sessions() as session:
        session.execute(
            update(Location).where(Location.id.in_([row[0] for row in gone])).values(missing=True)
        )
        for _, path, asset_id in gone:
            record_failure(session, path, STAGE_READ, BLOB_GONE, asset_id)
        assets = sorted({row[2] for row in gone})
        live: set[str] = set()
        for chunk in chunked(assets):
            live |= set(
                session.scalars(
                    select(Location.asset_id).where(
                        Location.asset_id.in_(chunk), Location.missing.is_(False)
                    )
                )
            )
        homeless = [asset_id for asset_id in assets if asset_id not in live]
        if homeless:
            index.delete(homeless)
            set_states(session, version_id, homeless, AssetState.FAILED)
        session.commit()
    return len(homeless)
