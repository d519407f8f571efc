"""Ingest runs that died: a run records which process on which host owns it, so a run still
marked ``running`` whose process is gone (``kill -9``, a crash, a reboot) is closed as
``killed`` instead of claiming to run forever."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.catalog.models import IngestRun, utcnow


def run_owner() -> dict[str, Any]:
    """What a new run stores in its ``counts`` until it finishes."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def close_dead_runs(session: Session) -> int:
    """Mark ``killed`` the running runs of this host whose process no longer exists. Runs of
    other hosts are left alone: this host cannot see their processes."""
    host = socket.gethostname()
    closed = 0
    for run in session.scalars(select(IngestRun).where(IngestRun.status == "running")):
        owner = run.counts or {}
        pid = owner.get("pid")
        if owner.get("host") == host and isinstance(pid, int) and not _alive(pid):
            run.status = "killed"
            run.finished_at = utcnow()
            closed += 1
    return closed
