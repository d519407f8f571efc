"""The outbox: work is committed to the catalog as ``queued`` before it is sent to the broker,
and the reconciler sends again whatever stayed queued or processing past a deadline. A broker
that loses its queue (Redis restarted empty) therefore loses nothing that was accepted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Location, utcnow
from ingest.records import set_states

log = logging.getLogger(__name__)

SendBatch = Callable[[int, list[str]], None]  # (index version id, asset ids)


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
    sessions: sessionmaker[Session], version_id: int, send: SendBatch, batch_size: int
) -> Enqueued:
    """Mark every pending asset with a live path as queued (committed), then send batches."""
    with sessions() as session:
        ids = sorted(
            set(
                session.scalars(
                    select(AssetIndexState.asset_id)
                    .join(Location, Location.asset_id == AssetIndexState.asset_id)
                    .where(
                        AssetIndexState.index_version_id == version_id,
                        AssetIndexState.state == AssetState.PENDING,
                        Location.missing.is_(False),
                    )
                )
            )
        )
        set_states(session, version_id, ids, AssetState.QUEUED)
        session.commit()
    return Enqueued(len(ids), _send_all(send, version_id, ids, batch_size))


def reconcile(
    sessions: sessionmaker[Session],
    version_id: int,
    send: SendBatch,
    older_than: timedelta,
    batch_size: int,
) -> Enqueued:
    """Send again what is stuck in queued/processing for longer than ``older_than``."""
    deadline = utcnow() - older_than
    with sessions() as session:
        ids = sorted(
            session.scalars(
                select(AssetIndexState.asset_id).where(
                    AssetIndexState.index_version_id == version_id,
                    AssetIndexState.state.in_((AssetState.QUEUED, AssetState.PROCESSING)),
                    AssetIndexState.updated_at < deadline,
                )
            )
        )
        set_states(session, version_id, ids, AssetState.QUEUED)
        session.commit()
    return Enqueued(len(ids), _send_all(send, version_id, ids, batch_size))


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
