"""The inline-or-workers decision: with CLIPDEX_BROKER_URL, accepted work goes to Celery
workers through the outbox; without it, it is encoded in this process. A long-lived producer
(the HTTP app) sends through a send window that gathers small sends into whole messages."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from ingest.queueing import SendBatch
    from ingest.send_window import SendWindow


class _LazySender:
    """A ``SendBatch`` whose Celery app (and its import) is made on the first send."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._send: SendBatch | None = None

    def __call__(self, version_id: int, asset_ids: list[str]) -> None:
        with self._lock:
            if self._send is None:
                from workers.app import make_celery, sender

                self._send = sender(make_celery(self._settings))
        self._send(version_id, asset_ids)


def dispatch_for(settings: Settings) -> SendBatch | None:
    """Where work goes: a sender to the workers, or ``None`` to encode inline."""
    if not settings.broker_url:
        return None
    return _LazySender(settings)


def send_window_for(
    settings: Settings, sessions: sessionmaker[Session], dispatch: SendBatch | None
) -> SendWindow | None:
    """The server's send window over ``dispatch`` (``CLIPDEX_SEND_WINDOW_MS``); ``None`` when
    work is encoded inline."""
    if dispatch is None:
        return None
    from ingest.send_window import SendWindow

    window = settings.send_window_ms / 1000
    return SendWindow(sessions, dispatch, settings.task_batch_size, window)
