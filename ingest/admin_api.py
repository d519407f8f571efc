"""Admin endpoints: status, failures, and long jobs (ingest a local folder, reindex, activate)
run inside the server, which is how the CLI works on an embedded home that ``clipdex serve``
owns (the embedded store admits one process).

Two routers, one per scope (the entry layer puts them behind the read and write keys). The
jobs themselves are the entry layer's business: it puts an :class:`AdminJobs` on
``app.state.jobs``.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from core.catalog.index_versions import VersionRefused
from core.model_names import model_problem
from core.status import collect_status
from ingest.failures import failure_rows
from ingest.scan import normalize_roots

read_router = APIRouter(tags=["admin"])
write_router = APIRouter(tags=["admin"])
MAX_ROOTS = 1000
MAX_PATH_CHARS = 4096
Text = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]


class JobBusy(RuntimeError):
    """Another admin job runs in this server (one at a time: they share the store)."""


@dataclass(slots=True)
class AdminJob:
    """One job's progress as the CLI renders it: phases (``hashing``, ``encoding``...) each
    with a total and a count done; then the report, or the error and its HTTP status."""

    id: str
    kind: str
    state: Literal["running", "done", "failed"] = "running"
    phase: str = ""
    phase_seq: int = 0
    total: int = 0
    done: int = 0
    report: dict[str, Any] | None = None
    error: str | None = None
    status: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start_phase(self, name: str, total: int) -> None:
        with self.lock:
            self.phase, self.total, self.done = name, total, 0
            self.phase_seq += 1

    def advance(self, count: int) -> None:
        with self.lock:
            self.done += count


class AdminJobs(Protocol):
    def start_ingest(self, roots: list[Path]) -> AdminJob: ...

    def start_reindex(self, order: ReindexIn) -> AdminJob: ...

    def job(self, job_id: str) -> AdminJob | None: ...

    def activate(self, version_id: int) -> dict[str, Any]: ...


class IngestIn(BaseModel):
    paths: Annotated[list[Text], Field(max_length=MAX_ROOTS)]  # none: every library


class ReindexIn(BaseModel):
    model: Annotated[str, Field(min_length=1, max_length=200)]
    pretrained: Text | None = None
    swap: bool = True
    gate: Text | None = Field(default=None, description="a queries file on the server")
    max_drop: Annotated[float, Field(ge=0, le=1)] = 0.02


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    phase: str
    phase_seq: int
    total: int
    done: int
    report: dict[str, Any] | None
    error: str | None
    status: int | None


def _jobs(request: Request) -> AdminJobs:
    jobs: AdminJobs = request.app.state.jobs
    return jobs


def _out(job: AdminJob) -> JobOut:
    with job.lock:
        return JobOut(
            id=job.id, kind=job.kind, state=job.state, phase=job.phase, phase_seq=job.phase_seq,
            total=job.total, done=job.done, report=job.report, error=job.error, status=job.status,
        )  # fmt: skip


@read_router.get("/v1/status")
def status(request: Request) -> dict[str, Any]:
    """What `clipdex status --json` prints: counts by state, points, the model, the last run."""
    return collect_status(request.app.state.runtime)


@read_router.get("/v1/failures")
def failures(request: Request) -> list[dict[str, Any]]:
    """Every file that could not be indexed, with the stage and the reason."""
    with request.app.state.runtime.sessions() as session:
        return failure_rows(session)


@write_router.post("/v1/admin/ingest", status_code=202, response_model=JobOut)
def ingest_folder(request: Request, body: IngestIn) -> JobOut:
    """Ingest folders or files of the server's own file system in a background job (as
    `clipdex ingest PATH`); poll ``GET /v1/admin/jobs/{id}``. 409 while another job runs."""
    paths = [Path(p) for p in body.paths]
    if any(not path.is_absolute() for path in paths):
        raise HTTPException(422, "paths must be absolute paths of the server's file system")
    # Checked before and after resolving: nothing about paths outside the roots is told
    # (exists or not), and a link inside the roots cannot lead out of them.
    _check_roots(request, [Path(os.path.normpath(path)) for path in paths])
    try:
        roots = normalize_roots(paths)
    except (OSError, ValueError) as error:  # missing, a name too long, a NUL byte...
        raise HTTPException(422, str(error)) from None
    _check_roots(request, roots)
    try:
        return _out(_jobs(request).start_ingest(roots))
    except JobBusy as error:
        raise HTTPException(409, str(error)) from None


def _local_caller(request: Request) -> bool:
    """The caller holds this server's local admin token: a process of the user who owns the
    home (``serve.json`` is readable by that user alone)."""
    token: str | None = getattr(request.app.state, "local_token", None)
    given = request.headers.get("x-api-key")
    return bool(token and given and secrets.compare_digest(token, given))


def _check_roots(request: Request, roots: list[Path]) -> None:
    """Any folder for the local CLI; for other write keys only folders under
    CLIPDEX_ALLOWED_IMAGE_ROOTS, as for libraries: a key must not open the whole disk."""
    if _local_caller(request):
        return
    allowed: list[Path] = request.app.state.settings.allowed_image_roots
    if any(not any(root.is_relative_to(a) for a in allowed) for root in roots):
        raise HTTPException(
            403, "a path is not under CLIPDEX_ALLOWED_IMAGE_ROOTS; only the local CLI may "
            "ingest other server folders",
        )  # fmt: skip


def _names_a_location(name: str) -> bool:
    """A model or pretrained name that points at a file or a hub, not a built-in tag."""
    return name.startswith(("hf-hub:", "~", ".")) or "/" in name or "\\" in name


@write_router.post("/v1/admin/reindex", status_code=202, response_model=JobOut)
def reindex(request: Request, body: ReindexIn) -> JobOut:
    """Build an index version with another model in a background job (as `clipdex reindex`);
    the server switches to it when it is live. 409 while another job runs."""
    if not _local_caller(request):
        if body.gate is not None:
            raise HTTPException(403, "only the local CLI may name a queries file on the server")
        if _names_a_location(body.model) or _names_a_location(body.pretrained or ""):
            raise HTTPException(
                403, "only the local CLI may load weights from a file or a hub; name an "
                "open_clip model and pretrained tag",
            )  # fmt: skip
    problem = model_problem(body.model, body.pretrained)  # a typo is not an outage: 422 now
    if problem is not None:
        raise HTTPException(422, problem)
    try:
        return _out(_jobs(request).start_reindex(body))
    except JobBusy as error:
        raise HTTPException(409, str(error)) from None


@write_router.get("/v1/admin/jobs/{job_id}", response_model=JobOut)
def job(request: Request, job_id: str) -> JobOut:
    """Phase, counts, and at the end the report or the error of one admin job."""
    found = _jobs(request).job(job_id)
    if found is None:
        raise HTTPException(404, f"no admin job with id {job_id!r}")
    return _out(found)


@write_router.post("/v1/index/{version_id}/activate")
def activate(
    request: Request, version_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)]
) -> dict[str, Any]:
    """Make a ready or retired index version live (rollback is the same call); this server
    switches to it before answering."""
    try:
        return _jobs(request).activate(version_id)
    except VersionRefused as error:
        raise HTTPException(409, str(error)) from None
