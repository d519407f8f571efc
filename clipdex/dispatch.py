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
    """A ``SendBatch`` whose Celery app (and its import) is made on the first send (or by
    :meth:`check`). Unless ``keep_going``, a failed send raises
    :class:`~ingest.queueing.SendRefused` naming the broker (without its password), which ends
    the command."""

    def __init__(self, settings: Settings, keep_going: bool) -> None:
        self._settings = settings
        self._keep_going = keep_going
        self._lock = threading.Lock()
        self._send: SendBatch | None = None

    def _sender(self) -> SendBatch:
        with self._lock:
            if self._send is None:
                from workers.app import make_celery, sender

                self._send = sender(make_celery(self._settings))
            return self._send

    def check(self) -> None:
        """Connect to the broker now: :class:`~ingest.queueing.SendRefused` if it cannot be
        reached (a command then stops before it registers any work)."""
        from ingest.queueing import SendRefused
        from workers.app import broker_problem, make_celery

        problem = broker_problem(make_celery(self._settings), self._settings.broker_url or "", 1)
        if problem is not None:
            raise SendRefused(problem)

    def __call__(self, version_id: int, asset_ids: list[str]) -> None:
        send = self._sender()
        if self._keep_going:
            send(version_id, asset_ids)
            return
        try:
            send(version_id, asset_ids)
        except Exception as error:
            from ingest.queueing import SendRefused
            from workers.app import shown_broker

            where = shown_broker(self._settings.broker_url or "")
            problem = " ".join(str(error).split()) or type(error).__name__
            raise SendRefused(
                f"cannot send work to the broker at {where} (CLIPDEX_BROKER_URL): {problem}"
            ) from error


def dispatch_for(settings: Settings, keep_going: bool = False) -> SendBatch | None:
    """Where work goes: a sender to the workers, or ``None`` to encode inline.

    ``keep_going`` (a long-running server): a send the broker refuses is logged and its rows
    stay queued for the reconciler. Otherwise (a command that then waits for the workers) the
    broker is reached once here, and a refused send later stops the command: either way one
    line (:class:`~ingest.queueing.SendRefused`) instead of waiting for ever."""
    if not settings.broker_url:
        return None
    send = _LazySender(settings, keep_going)
    if not keep_going:
        send.check()
    return send


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
