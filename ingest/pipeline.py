"""The batch pipeline: read+decode -> preprocess -> encode -> write (GUIDE §3).

Decode and preprocess run in a thread pool (Pillow and hashlib release the GIL) one batch ahead
of the encoder, so on a CPU-bound host the model is the only thing the run waits for. The same
code serves inline ingest and the Celery task.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from clipdex.catalog.models import Asset, AssetIndexState, AssetState, Failure, Location, utcnow
from clipdex.encoder import Encoder
from clipdex.ids import sha256_of_bytes
from clipdex.images import DecodeLimits, ImageRejected, decode_bytes, read_limited
from clipdex.preprocess import PreprocessConfig, to_model_input
from clipdex.store.base import PointRecord, VectorIndex
from ingest.payload import payloads_for


@dataclass(frozen=True, slots=True)
class WorkItem:
    asset_id: str
    sha256: str
    path: str


@dataclass(frozen=True, slots=True)
class Prepared:
    """One decoded, preprocessed image, or the reason it could not be."""

    item: WorkItem
    pixels: NDArray[np.uint8] | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    taken_at: object | None = None
    stage: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class StageTimes:
    """Seconds each stage kept the main thread busy; decode overlaps so it mostly waits 0."""

    wait_decode: float = 0.0
    encode: float = 0.0
    write: float = 0.0


@dataclass(slots=True)
class PipelineResult:
    encoded: int = 0
    failed: int = 0  # paths recorded as failures
    times: StageTimes = field(default_factory=StageTimes)


def prepare(item: WorkItem, limits: DecodeLimits, config: PreprocessConfig) -> Prepared:
    """Read, verify, decode and preprocess one file. Never raises for a bad file."""
    try:
        data = read_limited(Path(item.path), limits.max_file_bytes)
        if sha256_of_bytes(data) != item.sha256:
            return Prepared(item, stage="read", reason="file changed during ingest; rerun ingest")
        decoded = decode_bytes(data, limits)
        pixels = to_model_input(decoded.image, config)
    except ImageRejected as rejected:
        return Prepared(item, stage=rejected.stage, reason=rejected.reason)
    return Prepared(item, pixels, decoded.format, decoded.width, decoded.height, decoded.taken_at)


class Pipeline:
    def __init__(
        self,
        encoder: Encoder,
        index: VectorIndex,
        sessions: sessionmaker[Session],
        index_version_id: int,
        limits: DecodeLimits,
        batch_size: int,
        workers: int,
    ) -> None:
        self._encoder = encoder
        self._index = index
        self._sessions = sessions
        self._version_id = index_version_id
        self._limits = limits
        self._batch_size = batch_size
        self._workers = workers

    def run(
        self, items: Sequence[WorkItem], on_batch: Callable[[int], None] | None = None
    ) -> PipelineResult:
        result = PipelineResult()
        config = self._encoder.preprocess
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            for batch in self._prefetched(pool, items, config, result.times):
                self._finish(batch, result)
                if on_batch is not None:
                    on_batch(len(batch))
        return result

    def _prefetched(
        self,
        pool: ThreadPoolExecutor,
        items: Sequence[WorkItem],
        config: PreprocessConfig,
        times: StageTimes,
    ) -> Iterator[list[Prepared]]:
        """Yield decoded batches while the next batch is already decoding."""
        size = self._batch_size
        batches = iter([items[i : i + size] for i in range(0, len(items), size)])

        def submit(batch: Sequence[WorkItem]) -> list[Future[Prepared]]:
            return [pool.submit(prepare, item, self._limits, config) for item in batch]

        in_flight = deque(submit(batch) for batch in islice(batches, 2))
        while in_flight:
            futures = in_flight.popleft()
            started = time.perf_counter()
            ready = [future.result() for future in futures]
            times.wait_decode += time.perf_counter() - started
            following = next(batches, None)
            if following is not None:
                in_flight.append(submit(following))
            yield ready

    def _finish(self, batch: list[Prepared], result: PipelineResult) -> None:
        good = [p for p in batch if p.pixels is not None]
        bad = [p for p in batch if p.pixels is None]
        vectors = np.empty((0, 0), dtype=np.float32)
        if good:
            started = time.perf_counter()
            vectors = self._encoder.encode_images(np.stack([p.pixels for p in good]))  # type: ignore[misc]
            result.times.encode += time.perf_counter() - started
        started = time.perf_counter()
        with self._sessions() as session:
            for prepared in good:
                _record_metadata(session, prepared)
            session.flush()
            payloads = payloads_for(session, [p.item.asset_id for p in good])
            points = [
                PointRecord(p.item.asset_id, vectors[i], payloads[p.item.asset_id])
                for i, p in enumerate(good)
                if p.item.asset_id in payloads
            ]
            self._index.upsert(points)  # waits until applied, before the catalog says indexed
            _set_state(session, self._version_id, [p.id for p in points], AssetState.INDEXED)
            result.failed += _record_failures(session, self._version_id, bad)
            session.commit()
        result.encoded += len(points)
        result.times.write += time.perf_counter() - started


def _record_metadata(session: Session, prepared: Prepared) -> None:
    asset = session.get(Asset, prepared.item.asset_id)
    if asset is not None:
        asset.format = prepared.format
        asset.width = prepared.width
        asset.height = prepared.height
        asset.taken_at = prepared.taken_at  # type: ignore[assignment]


def _set_state(session: Session, version_id: int, ids: Iterable[str], state: str) -> None:
    id_list = list(ids)
    if not id_list:
        return
    session.execute(
        update(AssetIndexState)
        .where(
            AssetIndexState.index_version_id == version_id, AssetIndexState.asset_id.in_(id_list)
        )
        .values(state=state, updated_at=utcnow())
    )


def _record_failures(session: Session, version_id: int, bad: Sequence[Prepared]) -> int:
    """Every live path of a failed asset gets a failure row; the asset is not retried."""
    recorded = 0
    retryable = [p for p in bad if p.reason and p.reason.startswith("file changed")]
    final = [p for p in bad if p not in retryable]
    _set_state(session, version_id, [p.item.asset_id for p in final], AssetState.FAILED)
    now = utcnow()
    for prepared in bad:
        paths = session.scalars(
            select(Location.path).where(
                Location.asset_id == prepared.item.asset_id, Location.missing.is_(False)
            )
        ).all()
        for path in paths:
            row = session.scalars(select(Failure).where(Failure.path == path)).first()
            if row is None:
                row = Failure(path=path, asset_id=prepared.item.asset_id, attempts=0)
                session.add(row)
            row.stage = prepared.stage or "decode"
            row.reason = prepared.reason or "unknown"
            row.attempts += 1
            row.last_failed_at = now
            recorded += 1
    return recorded
