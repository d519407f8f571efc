"""Long admin jobs inside ``clipdex serve``: ingest a local folder, reindex, activate.

On an embedded home the server owns the store, so the CLI asks the server to do the work
(``ingest.admin_api``). A job runs in one background thread with the server's runtime, one at a
time (they share the store and the catalog); its progress is what the CLI polls and draws. The
work itself is the same code the CLI runs without a server, so a job killed with its server
(kill -9) resumes like a killed CLI run: run the command again.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from clipdex.errors import EXPECTED, message_of, status_of
from core.catalog.index_versions import VersionRefused
from core.runtime import Runtime
from ingest.activation import activate_synced
from ingest.admin_api import AdminJob, JobBusy, ReindexIn
from ingest.queueing import SendBatch
from ingest.reindex import ReindexRefused

log = logging.getLogger(__name__)
KEPT_JOBS = 50
Work = Callable[[AdminJob], dict[str, Any]]


class Follower(Protocol):
    """What switches the server's searches to the catalog's live version (``LiveTargets``)."""

    def refresh(self, swapped: bool = False) -> None: ...


class _Progress:
    """``ingest.run.Progress`` onto a job, for the CLI to poll."""

    def __init__(self, job: AdminJob) -> None:
        self._job = job

    def phase(self, name: str, total: int) -> None:
        self._job.start_phase(name, total)

    def advance(self, count: int) -> None:
        self._job.advance(count)


class ServerJobs:
    """Implements ``ingest.admin_api.AdminJobs`` for one server."""

    def __init__(self, runtime: Runtime, follower: Follower, dispatch: SendBatch | None) -> None:
        self._runtime = runtime
        self._follower = follower
        self._dispatch = dispatch
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, AdminJob] = OrderedDict()
        self._running: AdminJob | None = None

    def job(self, job_id: str) -> AdminJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start_ingest(self, roots: list[Path]) -> AdminJob:
        from ingest.run import ingest

        def work(job: AdminJob) -> dict[str, Any]:
            # Into the version this server searches, with that version's model: after a swap
            # it follows (made here or elsewhere), whatever model it was started with.
            self._follower.refresh()
            return ingest(self._runtime, roots, _Progress(job), self._dispatch).as_dict()

        return self._start("ingest", work)

    def start_reindex(self, order: ReindexIn) -> AdminJob:
        return self._start("reindex", lambda job: self._reindex(job, order))

    def activate(self, version_id: int) -> dict[str, Any]:
        new, old = activate_synced(self._runtime, version_id)
        self._follower.refresh(swapped=True)  # answer once this server searches the new one
        return {"live": new.id, "collection": new.collection, "retired": old.id if old else None}

    def _reindex(self, job: AdminJob, order: ReindexIn) -> dict[str, Any]:
        from clipdex.reindexing import gate_version, reindex_plan
        from ingest.reindex import reindex
        from search.evaluate import load_queries

        queries = load_queries(Path(order.gate)) if order.gate is not None else None
        swap = order.swap and queries is None
        plan = reindex_plan(self._runtime.settings, order.model, order.pretrained, swap)
        report = reindex(self._runtime, plan, _Progress(job))
        gated: dict[str, Any] | None = None
        if queries is not None and report.state == "ready":
            gated = gate_version(self._runtime, report.version, queries, order.max_drop, order.swap)
            report.state, report.swapped = gated["state"], gated["swapped"]
        if report.swapped:
            self._follower.refresh(swapped=True)
        return {**report.as_dict(), **({"gate": gated} if gated else {})}

    def _start(self, kind: str, work: Work) -> AdminJob:
        with self._lock:
            running = self._running
            if running is not None and running.state == "running":
                raise JobBusy(
                    f"the server is running a {running.kind} job ({running.id}); "
                    "wait for it to finish, then run this again"
                )
            job = self._running = AdminJob(uuid.uuid4().hex, kind)
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT_JOBS:
                self._jobs.popitem(last=False)
        thread = threading.Thread(target=self._run, args=(job, work), name=f"admin-{kind}")
        thread.daemon = True
        thread.start()
        return job

    @staticmethod
    def _run(job: AdminJob, work: Work) -> None:
        try:
            report = work(job)
        except Exception as error:
            message, status = _failure(job, error)
            with job.lock:
                job.state, job.error, job.status = "failed", message, status
            return
        with job.lock:
            job.state, job.report = "done", report


def _failure(job: AdminJob, error: Exception) -> tuple[str, int]:
    """The one line the CLI prints for a failed job, and its HTTP status."""
    if isinstance(error, EXPECTED):
        return message_of(error), status_of(error)
    if isinstance(error, ReindexRefused | VersionRefused):
        return str(error), 409
    if isinstance(error, OSError | ValueError):  # a missing file, a bad queries file
        return str(error), 422
    log.exception("admin job %s (%s) failed", job.id, job.kind)
    return "internal error; see the server log", 500
