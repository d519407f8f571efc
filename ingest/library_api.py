"""Library endpoints: GET /v1/libraries (read); POST /v1/libraries, DELETE /v1/libraries/{id},
POST /v1/libraries/{id}/scan (write).

Like ``ingest.api``, the entry layer includes these routers behind the read and write keys and
puts the runtime and the dispatch (workers, or ``None``: in this process) on ``app.state``. A
scan is answered 202 at once and runs in the background; one scan at a time per server (a
second request while one runs is a 409), and its counts land on the library (``last_scan``)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.runtime import Runtime
from ingest.forget import remove_library
from ingest.libraries import (
    BadLibrary,
    LibraryInfo,
    add_library,
    find_library,
    info_of,
    list_libraries,
    own_folders,
    resolved_root,
)
from ingest.queueing import SendBatch
from ingest.run import ingest

log = logging.getLogger(__name__)
read_router = APIRouter(tags=["libraries"])
write_router = APIRouter(tags=["libraries"])


class LibraryIn(BaseModel):
    path: str = Field(min_length=1, max_length=4096, description="A folder on the server.")
    excludes: list[str] = Field(default_factory=list, max_length=200)
    include_hidden: bool = False


class LibraryOut(BaseModel):
    id: int
    path: str
    excludes: list[str]
    include_hidden: bool
    added_at: datetime
    last_scan_at: datetime | None
    last_scan: dict[str, Any] | None
    missing: bool


class RemovedOut(BaseModel):
    id: int
    path: str
    paths: int
    removed: int


class ScanOut(BaseModel):
    library: int
    path: str
    status: str


def _out(info: LibraryInfo) -> LibraryOut:
    return LibraryOut(**info.as_dict())


@read_router.get("/v1/libraries", response_model=list[LibraryOut])
def get_libraries(request: Request) -> list[LibraryOut]:
    """Every library, its rules, its last scan, and whether its root is missing."""
    with request.app.state.runtime.sessions() as session:
        return [_out(info) for info in list_libraries(session)]


@write_router.post("/v1/libraries", status_code=201, response_model=LibraryOut)
def post_library(request: Request, body: LibraryIn) -> LibraryOut:
    """Add a server folder as a library (or set its rules); scan it with .../scan. Only
    folders under CLIPDEX_ALLOWED_IMAGE_ROOTS: a key must not open the whole disk."""
    allowed: list[Path] = request.app.state.settings.allowed_image_roots
    wanted = resolved_root(body.path)
    if not any(wanted.is_relative_to(root) for root in allowed):
        raise BadLibrary(
            f"{body.path} is not under CLIPDEX_ALLOWED_IMAGE_ROOTS; the server adds libraries "
            "only there (or use `clipdex library add` on the server)"
        )
    with request.app.state.runtime.sessions() as session:
        own = own_folders(request.app.state.settings)
        library, _ = add_library(session, Path(body.path), body.excludes, body.include_hidden, own)
        info = info_of(session, library)
        session.commit()
    return _out(info)


@write_router.delete("/v1/libraries/{library_id}", response_model=RemovedOut)
def delete_library(request: Request, library_id: int) -> RemovedOut:
    """Forget a library; its images leave the index unless another path holds their bytes."""
    removed = remove_library(request.app.state.runtime, library_id)
    return RemovedOut(
        id=removed.id, path=removed.path, paths=removed.paths, removed=removed.removed
    )


def _scan_lock(request: Request) -> threading.Lock:
    state = request.app.state
    if not hasattr(state, "library_scan_lock"):
        state.library_scan_lock = threading.Lock()
    lock: threading.Lock = state.library_scan_lock
    return lock


def _scan(runtime: Runtime, path: Path, dispatch: SendBatch | None, lock: threading.Lock) -> None:
    try:
        ingest(runtime, [path], dispatch=dispatch)
    except Exception:
        log.exception("scan of library %s failed", path)
    finally:
        lock.release()


@write_router.post(
    "/v1/libraries/{library_id}/scan", status_code=202, response_model=ScanOut,
    responses={409: {"description": "a scan is already running"}},
)  # fmt: skip
def scan_library(
    request: Request, library_id: int, background: BackgroundTasks
) -> ScanOut | JSONResponse:
    """Rescan one library in the background (new, changed, moved, deleted files)."""
    runtime: Runtime = request.app.state.runtime
    with runtime.sessions() as session:
        info = info_of(session, find_library(session, library_id))
    if info.missing:
        detail = f"the library root {info.path} is missing (not mounted?); nothing to scan"
        return JSONResponse({"detail": detail}, status_code=409)
    lock = _scan_lock(request)
    if not lock.acquire(blocking=False):
        return JSONResponse({"detail": "a library scan is already running"}, status_code=409)
    background.add_task(_scan, runtime, Path(info.path), request.app.state.dispatch, lock)
    return ScanOut(library=info.id, path=info.path, status="scanning")
