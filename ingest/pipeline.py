"""The batch pipeline: read+decode -> preprocess -> encode -> write (GUIDE §3).

Decode and preprocess run in a pool one batch ahead of the encoder: threads by default (Pillow
and hashlib release the GIL), or processes (``decode_pool="processes"``, for hosts with many
cores feeding a GPU; started by forkserver, never forked from a process holding torch threads,
and threads again inside a daemonic Celery child, which may not have children). Catalog and store
writes run on one writer thread (``write_behind``), so the encoder never waits on them.

Order and resume guarantees are unchanged: batches are written one at a time, in order; a batch is
upserted (``wait=True``) before the catalog marks it indexed, in one transaction; at most one
batch's write is in flight, and an error in it stops the run before the next write starts.
The same code serves inline ingest and the Celery task.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.batching import chunked
from core.catalog.models import Asset, AssetIndexState, AssetState, Failure, Location
from core.encoder import Encoder
from core.ids import sha256_of_bytes
from core.images import (
    DecodeLimits,
    ExifText,
    ImageRejected,
    configure_pillow,
    decode_bytes,
    read_limited,
)
from core.preprocess import PreprocessConfig, to_model_input
from core.store.base import PointRecord, VectorIndex
from ingest.payload import payloads_for
from ingest.records import fail_live_paths, set_states

log = logging.getLogger(__name__)

DecodePool = Literal["threads", "processes"]


@dataclass(frozen=True, slots=True)
class WorkItem:
    asset_id: str
    sha256: str
    path: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded, preprocessed image, ready for the encoder."""

    item: WorkItem
    pixels: NDArray[np.uint8]
    format: str
    width: int
    height: int
    taken_at: datetime | None
    exif: ExifText


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why one file could not become model input."""

    item: WorkItem
    stage: str
    reason: str
    final: bool = True  # False: the file changed under us; a later ingest retries it


Prepared = Decoded | Rejected


@dataclass(slots=True)
class StageTimes:
    """Seconds per stage: the main thread's waits for decode and for the writer, its encoding,
    and the writer's own busy time (which overlaps encoding when writes run behind)."""

    wait_decode: float = 0.0
    encode: float = 0.0
    wait_write: float = 0.0
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
            return Rejected(item, "read", "file changed during ingest; rerun ingest", final=False)
        decoded = decode_bytes(data, limits)
        pixels = to_model_input(decoded.image, config)
    except ImageRejected as rejected:
        return Rejected(item, rejected.stage, rejected.reason)
    except Exception as error:  # a decoder bug must cost one file, never the batch
        log.exception("unexpected error preparing %s", item.path)
        return Rejected(item, "decode", f"unexpected {type(error).__name__}: {error}"[:500])
    return Decoded(
        item, pixels, decoded.format, decoded.width, decoded.height, decoded.taken_at,
        decoded.exif,
    )  # fmt: skip


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
        before_write: Callable[[], None] | None = None,
        decode_pool: DecodePool = "threads",
        write_behind: bool = True,
    ) -> None:
        """``before_write`` runs before each batch is stored (the free-space floor); when it
        raises, that batch is neither stored nor marked indexed."""
        self._decode_pool: DecodePool = decode_pool
        self._write_behind = write_behind
        self._before_write = before_write
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
        writing: tuple[Future[_Written], int] | None = None
        with (
            _decode_executor(self._decode_pool, self._workers, self._limits) as pool,
            ThreadPoolExecutor(1, thread_name_prefix="clipdex-write") as writer,
        ):
            for batch in self._prefetched(pool, items, config, result.times):
                encoded = self._encode(batch, result.times)
                if writing is not None:  # the previous batch is stored before this one
                    self._settle(*writing, result, on_batch)
                    writing = None
                if self._write_behind:
                    writing = (writer.submit(self._write, *encoded), len(batch))
                else:
                    self._settle(_done(self._write(*encoded)), len(batch), result, on_batch)
            if writing is not None:
                self._settle(*writing, result, on_batch)
        return result

    @staticmethod
    def _settle(
        written: Future[_Written],
        size: int,
        result: PipelineResult,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        started = time.perf_counter()
        outcome = written.result()  # a failed write raises here and stops the run
        result.times.wait_write += time.perf_counter() - started
        result.encoded += outcome.encoded
        result.failed += outcome.failed
        result.times.write += outcome.seconds
        if on_batch is not None:
            on_batch(size)

    def _prefetched(
        self,
        pool: Executor,
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

    def _encode(
        self, batch: list[Prepared], times: StageTimes
    ) -> tuple[list[Decoded], list[Rejected], NDArray[np.float32]]:
        good = [p for p in batch if isinstance(p, Decoded)]
        bad = [p for p in batch if isinstance(p, Rejected)]
        vectors = np.empty((0, 0), dtype=np.float32)
        if good:
            started = time.perf_counter()
            vectors = self._encoder.encode_images(np.stack([p.pixels for p in good]))
            times.encode += time.perf_counter() - started
        return good, bad, vectors

    def _write(
        self, good: list[Decoded], bad: list[Rejected], vectors: NDArray[np.float32]
    ) -> _Written:
        if self._before_write is not None:
            self._before_write()
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
            set_states(session, self._version_id, [p.id for p in points], AssetState.INDEXED)
            for chunk in chunked([p.id for p in points]):  # an earlier failure is over
                session.execute(delete(Failure).where(Failure.asset_id.in_(chunk)))
            failed = _record_failures(session, self._version_id, bad)
            session.commit()
        gone = self._forgotten_meanwhile([p.id for p in points])
        return _Written(len(points) - gone, failed, time.perf_counter() - started)

    def _forgotten_meanwhile(self, ids: list[str]) -> int:
        """Points of assets whose row left the version while this batch encoded them (deleted
        through the API, forgotten by an ingest) would be hits nothing can remove: drop them.
        A deletion after this check deletes the points again once its rows are gone."""
        with self._sessions() as session:
            kept = {
                asset_id
                for chunk in chunked(ids)
                for asset_id in session.scalars(
                    select(AssetIndexState.asset_id).where(
                        AssetIndexState.index_version_id == self._version_id,
                        AssetIndexState.asset_id.in_(chunk),
                    )
                )
            }
        gone = [asset_id for asset_id in ids if asset_id not in kept]
        if gone:
            self._index.delete(gone)
        return len(gone)


@dataclass(frozen=True, slots=True)
class _Written:
    encoded: int
    failed: int
    seconds: float


def _done(written: _Written) -> Future[_Written]:
    future: Future[_Written] = Future()
    future.set_result(written)
    return future


def _decode_executor(kind: DecodePool, workers: int, limits: DecodeLimits) -> Executor:
    """Threads, or processes where this process may have children (a Celery pool child may
    not). Processes start from a fork server: forking a process that runs torch's thread pools
    can deadlock its children."""
    if kind == "processes" and not multiprocessing.current_process().daemon:
        return ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=configure_pillow,
            initargs=(limits.max_image_pixels,),
        )
    return ThreadPoolExecutor(workers, thread_name_prefix="clipdex-decode")


def _record_metadata(session: Session, decoded: Decoded) -> None:
    asset = session.get(Asset, decoded.item.asset_id)
    if asset is not None:
        asset.format = decoded.format
        asset.width = decoded.width
        asset.height = decoded.height
        asset.taken_at = decoded.taken_at
        asset.camera_make = decoded.exif.camera_make
        asset.camera_model = decoded.exif.camera_model
        asset.description = decoded.exif.description


def _record_failures(session: Session, version_id: int, bad: Sequence[Rejected]) -> int:
    """Every live path of a failed asset gets a failure row; a final failure is not retried."""
    set_states(session, version_id, [p.item.asset_id for p in bad if p.final], AssetState.FAILED)
    return sum(fail_live_paths(session, p.item.asset_id, p.stage, p.reason) for p in bad)


def work_items(
    session: Session, version_id: int, states: Sequence[str], asset_ids: Sequence[str] | None = None
) -> list[WorkItem]:
    """One live path per asset in one of ``states`` (optionally only these ids), by path."""
    query = (
        select(Asset.id, Asset.sha256, Location.path)
        .join(Location, Location.asset_id == Asset.id)
        .join(AssetIndexState, AssetIndexState.asset_id == Asset.id)
        .where(
            Location.missing.is_(False),
            AssetIndexState.index_version_id == version_id,
            AssetIndexState.state.in_(states),
        )
        .order_by(Location.path)
    )
    chunks = [None] if asset_ids is None else list(chunked(asset_ids))
    items: dict[str, WorkItem] = {}
    for chunk in chunks:
        scoped = query if chunk is None else query.where(Asset.id.in_(chunk))
        for asset_id, sha256, path in session.execute(scoped):
            items.setdefault(asset_id, WorkItem(asset_id, sha256, path))
    return list(items.values())
