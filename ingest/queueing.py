"""The outbox: work is committed to the catalog as ``queued`` before it is sent to the broker,
and the reconciler sends whatever stayed queued, processing or pending past a deadline. A
broker that loses its queue (Redis restarted empty) therefore loses nothing that was accepted.

Each row is sent once: a producer reads its candidates, then claims them in chunks, each one
``UPDATE ... WHERE <the row is still what it read> ... RETURNING asset_id`` committed on its
own, and sends only the ids its own statements returned. Two producers racing over the same
pending rows (an upload, a folder ingest, a reindex's poll; on PostgreSQL or SQLite) split them
between them and never both send one: PostgreSQL checks the condition again on a row another
transaction changed meanwhile, and SQLite runs one writer at a time. The reconciler claims its
stale rows the same way, so a row a worker picked up meanwhile is left alone."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, Update, and_, exists, func, or_, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Base, Location, utcnow

log = logging.getLogger(__name__)

SendBatch = Callable[[int, list[str]], None]  # (index version id, asset ids)
CLAIM_TRIES = 3
RETRY_SQLSTATES = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure
STATES = Base.metadata.tables[AssetIndexState.__tablename__]
LOCATIONS = Base.metadata.tables[Location.__tablename__]


class SendRefused(RuntimeError):
    """A sender that gives up at once (a one-shot command whose broker cannot be reached): the
    round stops, and the rows it claimed but did not send go back to pending, where running
    the command again claims them at once."""


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
    c = STATES.c
    live = exists().where(LOCATIONS.c.asset_id == c.asset_id, LOCATIONS.c.missing.is_(False))
    with sessions() as session:
        ids = list(
            session.scalars(
                select(c.asset_id)
                .where(c.index_version_id == version_id, c.state == AssetState.PENDING, live)
                .order_by(c.asset_id)
            )
        )
    if whole_batches:
        ids = ids[: len(ids) // batch_size * batch_size]
    claimed = _claim(sessions, version_id, ids, state_in(AssetState.PENDING))
    return Enqueued(len(claimed), send_claimed(sessions, send, version_id, claimed, batch_size))


def reconcile(
    sessions: sessionmaker[Session],
    version_id: int,
    send: SendBatch,
    older_than: timedelta,
    batch_size: int,
) -> Enqueued:
    """Send again what is stuck in queued/processing for longer than ``older_than``, and send
    what stayed pending (with a live path) that long: its producer died before sending (a send
    window's process killed inside the window) or failed before its claim."""
    deadline = utcnow() - older_than
    c = STATES.c
    live = exists().where(LOCATIONS.c.asset_id == c.asset_id, LOCATIONS.c.missing.is_(False))
    stuck = c.state.in_((AssetState.QUEUED, AssetState.PROCESSING))
    with sessions() as session:
        ids = list(
            session.scalars(
                select(c.asset_id)
                .where(
                    c.index_version_id == version_id,
                    c.updated_at < deadline,
                    or_(stuck, and_(c.state == AssetState.PENDING, live)),
                )
                .order_by(c.asset_id)
            )
        )
    still = and_(
        state_in(AssetState.QUEUED, AssetState.PROCESSING, AssetState.PENDING),
        c.updated_at < deadline,
    )
    claimed = _claim(sessions, version_id, ids, still)
    return Enqueued(len(claimed), send_claimed(sessions, send, version_id, claimed, batch_size))


def state_in(*states: str) -> ColumnElement[bool]:
    """The row's state is one of ``states``, in a form no index serves (see claim_statement)."""
    return func.coalesce(STATES.c.state, "").in_(states)


def _claim(
    sessions: sessionmaker[Session],
    version_id: int,
    ids: Sequence[str],
    still: ColumnElement[bool],
) -> list[str]:
    """Set to queued those of ``ids`` that ``still`` holds for, a chunk per statement, each
    committed; returns the ids claimed, sorted. A row another producer claimed (or changed)
    after it was read fails ``still`` and is not returned."""
    claimed: list[str] = []
    with sessions() as session:
        for chunk in chunked(ids):
            claimed += _run_claim(session, claim_statement(version_id, chunk, still))
    return sorted(claimed)


def claim_statement(
    version_id: int, chunk: Sequence[str], still: ColumnElement[bool],
    state: str = AssetState.QUEUED,
) -> Update:  # fmt: skip
    """``UPDATE ... SET state = 'queued' ... RETURNING asset_id`` (or another ``state``) for
    the rows of ``chunk`` that ``still`` holds for; run it after :func:`by_primary_key`.

    A chunk must be found by primary key, whatever the statistics say. With a plain
    ``index_version_id = ...`` (or ``state = ...``), a planner without statistics (a fresh
    catalog, a new index version; seen on PostgreSQL and SQLite) serves the claim from the
    (version, state) index and reads every row of the version for each chunk: claiming
    100,000 fresh rows took minutes. So version and state are compared in a form no index
    serves, which leaves the primary key (or, on PostgreSQL, a scan: see ``by_primary_key``)."""
    c = STATES.c
    return (
        update(STATES)
        .where(c.asset_id.in_(chunk), func.coalesce(c.index_version_id, 0) == version_id, still)
        .values(state=state, updated_at=utcnow())
        .returning(c.asset_id)
    )


def by_primary_key(session: Session) -> None:
    """On PostgreSQL, no sequential scan in this transaction: without statistics, the planner
    takes a chunk's ids for most of the table and would read all of it for each chunk."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))


def _run_claim(session: Session, statement: Update) -> list[str]:
    """One chunk's claim, committed. PostgreSQL may end one of two claimers that lock rows in
    different orders (a deadlock) or ask for a retry: the chunk is claimed again."""
    for attempt in range(CLAIM_TRIES):
        try:
            by_primary_key(session)
            ids = list(session.execute(statement).scalars())
            session.commit()
            return ids
        except DBAPIError as error:
            session.rollback()
            retry = getattr(error.orig, "sqlstate", None) in RETRY_SQLSTATES
            if not retry or attempt + 1 == CLAIM_TRIES:
                raise
            log.info("claim ended by the database (%s); trying again", error.orig)
    raise AssertionError("unreachable")


def send_claimed(
    sessions: sessionmaker[Session], send: SendBatch, version_id: int, ids: list[str],
    batch_size: int,
) -> int:  # fmt: skip
    """Send ids this producer claimed (queued in the catalog), one message per batch of ids,
    never one per image; returns how many ids were sent. A send that fails leaves its rows
    queued, where the reconciler finds them. A :class:`SendRefused` ends the round: the rows
    not sent go back to pending (running the command again sends them; nobody need wait the
    reconciler's age) and it is raised again, counting them."""
    sent = 0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        try:
            send(version_id, chunk)
        except SendRefused as error:
            released = _release(sessions, version_id, ids[start:])
            raise SendRefused(
                f"{error}; {released} assets stay pending in the catalog: once the broker is "
                "up, running the command again sends them (for the live index, so does "
                "`clipdex reconcile --older-than 0`)"
            ) from None
        except Exception as error:  # broker down: the outbox keeps the work
            log.warning(
                "could not enqueue %d assets (%s); they stay queued in the catalog, and "
                "`clipdex reconcile` sends them once the broker is up", len(chunk), error,
            )  # fmt: skip
        else:
            sent += len(chunk)
    return sent


def _release(sessions: sessionmaker[Session], version_id: int, ids: Sequence[str]) -> int:
    """Claimed rows that were never sent back to pending (those a worker has not picked up
    meanwhile: a refused send may still have reached the broker); returns how many."""
    released = 0
    with sessions() as session:
        for chunk in chunked(ids):
            queued = state_in(AssetState.QUEUED)
            statement = claim_statement(version_id, chunk, queued, state=AssetState.PENDING)
            released += len(_run_claim(session, statement))
    return released
