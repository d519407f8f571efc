"""The outbox: work is committed to the catalog as ``queued`` before it is sent to the broker,
and the reconciler sends whatever stayed queued, processing or pending past a deadline. A
broker that loses its queue (Redis restarted empty) therefore loses nothing that was accepted.

Each row is sent once: moving rows from pending to queued is an atomic claim, one
``UPDATE ... WHERE state = 'pending' ... RETURNING asset_id``, and a call sends only the ids its
own statement returned. Two producers racing over the same pending rows (an upload, a folder
ingest, a reindex's poll, on PostgreSQL or SQLite) split them between them, never both send one:
PostgreSQL re-checks the ``state`` condition on a row another transaction changed meanwhile, and
SQLite runs one writer at a time. The reconciler claims its stale rows the same way."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import (
    ColumnElement,
    FromClause,
    and_,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Base, Location, utcnow

log = logging.getLogger(__name__)

SendBatch = Callable[[int, list[str]], None]  # (index version id, asset ids)
STATES = Base.metadata.tables[AssetIndexState.__tablename__]
LOCATIONS = Base.metadata.tables[Location.__tablename__]


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What a send round did: ``queued`` ids were committed as queued in the catalog, and the
    broker accepted the messages of ``sent`` of them. The rest stay queued for the reconciler."""

    queued: int = 0
    sent: int = 0

    @property
    def unsent(self) -> int:
        return self.queued - self.sent

    def as_dict(self) -> dict[str, int]:
        return {"queued": self.queued, "sent": self.sent}


def enqueue_pending(
    sessions: sessionmaker[Session], version_id: int, send: SendBatch, batch_size: int
) -> int:
    """:func:`queue_pending`, returning only how many ids were queued in the catalog."""
    return queue_pending(sessions, version_id, send, batch_size).queued


def queue_pending(
    sessions: sessionmaker[Session],
    version_id: int,
    send: SendBatch,
    batch_size: int,
    whole_batches: bool = False,
) -> Enqueued:
    """Claim the version's pending assets that have a live path (pending -> queued, committed),
    then send what this call claimed, ``batch_size`` ids per message. ``whole_batches``: claim
    only as many as fill whole messages and leave the rest pending (a send window's early
    round); a concurrent claimer can still leave this call a part of a batch."""
    with sessions() as session:
        limit = None
        if whole_batches:
            count = session.scalar(
                select(func.count()).select_from(STATES).where(_pending(version_id, STATES))
            )
            limit = (count or 0) // batch_size * batch_size
            if not limit:
                return Enqueued()
        ids = _claim(session, lambda table: _pending(version_id, table), limit)
        session.commit()
    return Enqueued(len(ids), _send_all(send, version_id, ids, batch_size))


def reconcile(
    sessions: sessionmaker[Session],
    version_id: int,
    send: SendBatch,
    older_than: timedelta,
    batch_size: int,
) -> Enqueued:
    """Send again what is stuck in queued/processing for longer than ``older_than``, and send
    what stayed pending (with a live path) that long: its producer died before sending (a send
    window's process killed inside the window) or failed before its claim. Claimed like
    :func:`queue_pending`: a row changed meanwhile (say, indexed by a worker) is left alone."""
    deadline = utcnow() - older_than

    def stale(table: FromClause) -> ColumnElement[bool]:
        stuck = table.c.state.in_((AssetState.QUEUED, AssetState.PROCESSING))
        return and_(
            table.c.index_version_id == version_id,
            table.c.updated_at < deadline,
            or_(stuck, _pending(version_id, table)),
        )

    with sessions() as session:
        ids = _claim(session, stale)
        session.commit()
    return Enqueued(len(ids), _send_all(send, version_id, ids, batch_size))


def _pending(version_id: int, table: FromClause) -> ColumnElement[bool]:
    """Rows of ``version_id`` waiting to be sent: pending, with a path that is not missing."""
    c = table.c
    live = exists().where(LOCATIONS.c.asset_id == c.asset_id, LOCATIONS.c.missing.is_(False))
    return and_(c.index_version_id == version_id, c.state == AssetState.PENDING, live)


def _claim(
    session: Session,
    condition: Callable[[FromClause], ColumnElement[bool]],
    limit: int | None = None,
) -> list[str]:
    """Set the rows matching ``condition`` to queued in one statement; returns their ids, sorted.
    ``limit``: at most this many, the first by id.

    The rows are picked by a subquery that locks them and skips rows another transaction holds
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer at a time and no such
    clause), so two claimers never wait on each other's rows, never deadlock, and the
    condition, checked again on the row being updated, keeps a row claimed meanwhile out."""
    chosen = STATES.alias("chosen")  # its own name: not correlated with the updated table
    pick = select(chosen.c.asset_id).where(condition(chosen))
    if limit is not None:
        pick = pick.order_by(chosen.c.asset_id).limit(limit)
    pick = pick.with_for_update(skip_locked=True, of=chosen)
    claim = (
        update(STATES)
        .where(condition(STATES), STATES.c.asset_id.in_(pick.scalar_subquery()))
        .values(state=AssetState.QUEUED, updated_at=utcnow())
        .returning(STATES.c.asset_id)
    )
    return sorted(session.execute(claim).scalars())


def _send_all(send: SendBatch, version_id: int, ids: list[str], batch_size: int) -> int:
    """One message per batch of ids, never one per image; returns how many ids were sent. A
    send that fails leaves its rows queued in the catalog, where the reconciler finds them."""
    sent = 0
    for chunk in chunked(ids, batch_size):
        try:
            send(version_id, chunk)
        except Exception as error:  # broker down: the outbox keeps the work
            log.warning("could not enqueue %d assets (%s); the reconciler will", len(chunk), error)
        else:
            sent += len(chunk)
    return sent
