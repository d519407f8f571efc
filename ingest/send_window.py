"""Gather small sends into whole task messages: ten one-image uploads 0.3 s apart become one
message of ten ids, not ten messages of one.

Where the coalescing happens, and why: in the producer process, before anything is sent. A
Celery worker here runs with prefetch 1 and late acks, so it holds one message at a time and
cannot merge messages it has not received; and a worker that took rows other, still queued
messages name would make those messages find the rows already claimed, which the batch task
reads as the trace of a dead delivery (``ingest.batch``: such suspects are isolated and encoded
one by one, and count an attempt toward the dead-letter cap). So the long-lived producer (the
HTTP app: uploads) leaves the rows pending and pokes a :class:`SendWindow`; its thread claims
and sends them with the atomic :func:`ingest.queueing.queue_pending` (each row is sent once):

- when no new poke came for ``window`` seconds (the quiet window, ``CLIPDEX_SEND_WINDOW_MS``);
- at the latest ``CAP_WINDOWS`` windows after the first unsent poke (a steady trickle);
- at once, whole messages only, when the pokes announce ``batch_size`` rows or more;
- on :meth:`SendWindow.stop` (the app's shutdown), everything still waiting.

A window of 0 sends in the poking thread, at once (one message per request). Short-lived
commands (folder and manifest ingest, verify, reindex) send whole batches already and keep
sending at once. A process killed inside its window leaves its rows pending with nothing lost:
``ingest.queueing.reconcile`` sends pending rows older than its deadline, and any later send of
the same version (the next upload) claims them too.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from ingest.queueing import SendBatch, queue_pending

log = logging.getLogger(__name__)

CAP_WINDOWS = 10  # the longest a poked row waits: this many windows after the first poke


@dataclass(slots=True)
class _Armed:
    """One version's unsent pokes: when the first and the last came, and how many rows they
    announced since the last round (an estimate: a duplicate upload counts too)."""

    first: float
    last: float
    rows: int = 0


class SendWindow:
    """Coalesces the sends of one producer process; see the module docstring. Thread-safe."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        send: SendBatch,
        batch_size: int,
        window_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._send = send
        self._batch_size = batch_size
        self._window = max(window_seconds, 0.0)
        self._cap = CAP_WINDOWS * self._window
        self._wake = threading.Condition()
        self._armed: dict[int, _Armed] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def window_seconds(self) -> float:
        return self._window

    def poke(self, version_id: int, rows: int = 1) -> None:
        """``rows`` of ``version_id`` were just committed as pending: send them soon."""
        if self._window <= 0:
            queue_pending(self._sessions, version_id, self._send, self._batch_size)
            return
        now = time.monotonic()
        with self._wake:
            armed = self._armed.setdefault(version_id, _Armed(now, now))
            armed.last = now
            armed.rows += max(rows, 0)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="send-window", daemon=True)
                self._thread.start()
            self._wake.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """Send everything still waiting, now, and end the thread (the app's shutdown). A later
        poke starts a new one."""
        with self._wake:
            self._stopping = True
            thread = self._thread
            self._wake.notify()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning(
                    "the send window did not finish in %.0f s; reconcile sends the rest", timeout
                )
        with self._wake:
            self._stopping = False

    def _run(self) -> None:
        try:
            while rounds := self._next_rounds():
                for version_id, whole in rounds:
                    self._round(version_id, whole)
        finally:
            with self._wake:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _next_rounds(self) -> list[tuple[int, bool]]:
        """Wait for the next due round(s); ``[]`` (and the thread ends) when nothing is armed."""
        with self._wake:
            while self._armed:
                now = time.monotonic()
                rounds = self._due(now)
                if rounds:
                    return rounds
                wait = min(
                    min(a.last + self._window, a.first + self._cap) for a in self._armed.values()
                )
                self._wake.wait(max(wait - now, 0.0))
            self._thread = None  # under the lock: a poke from now on starts a new thread
            return []

    def _due(self, now: float) -> list[tuple[int, bool]]:
        """(version id, whole batches only) of each round due now; disarms what goes whole."""
        rounds = []
        for version_id, armed in list(self._armed.items()):
            quiet = now - armed.last >= self._window
            if self._stopping or quiet or now - armed.first >= self._cap:
                del self._armed[version_id]
                rounds.append((version_id, False))
            elif armed.rows >= self._batch_size:
                armed.rows %= self._batch_size
                rounds.append((version_id, True))
        return rounds

    def _round(self, version_id: int, whole: bool) -> None:
        try:
            queue_pending(
                self._sessions, version_id, self._send, self._batch_size, whole_batches=whole
            )
        except Exception:  # the catalog failed: the rows stay pending, nothing is lost
            log.exception(
                "could not send the pending work of index version %d; it stays pending, for "
                "the next send or `clipdex reconcile`",
                version_id,
            )
