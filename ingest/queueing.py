"""The outbox: work is committed to the catalog as ``queued`` before it is sent to the broker,
and the reconciler sends again whatever stayed queued or processing past a deadline. A broker
that loses its queue (Redis restarted empty) therefore loses nothing that was accepted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.batching import chunked
from core.catalog.models import AssetIndexState, AssetState, Location, utcnow
from ingest.records import set_states

log = logging.getLogger(__name__)

SendBatch = Callable[[int, list[str]], None]  # (index version id, asset ids)


def enqueue_pending(
    sessions: sessionmaker[Session], version_id: int, send: SendBatch, batch_size: int
) -> int:
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
    _send_all(send, version_id, ids, batch_size)
    return len(ids)


def reconcile(
    sessions: sessionmaker[Session],
    version_id: int,
    send: SendBatch,
    older_than: timedelta,
    batch_size: int,
) -> int:
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
    _send_all(send, version_id, ids, batch_size)
    return len(ids)


def _send_all(send: SendBatch, version_id: int, ids: list[str], batch_size: int) -> None:
    """One message per batch of ids, never one per image. A send that fails leaves its rows
    queued in the catalog, where the reconciler finds them."""
    for chunk in chunked(ids, batch_size):
        try:
            send(version_id, chunk)
        except Exception as error:  # broker down: the outbox keeps the work
            log.warning("could not enqueue %d assets (%s); the reconciler will", len(chunk), error)
