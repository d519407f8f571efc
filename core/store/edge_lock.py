"""The embedded store's lock: one process at a time holds ``root/.lock`` (an advisory
``flock``, released by the kernel when the process dies), with its pid written in it so that
the refusal can name the holder."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from core.store.base import StoreLocked


def take_lock(root: Path) -> IO[str]:
    handle = (root / ".lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreLocked(locked_message(root, holder)) from error
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def locked_message(root: Path, holder: str = "another process") -> str:
    return (
        f"the embedded vector store at {root} is in use by process {holder}. The embedded store "
        "allows one process at a time; stop the other process, or run a Qdrant server and set "
        "CLIPDEX_QDRANT_URL (see docker-compose.yml) so that several processes can share it."
    )
