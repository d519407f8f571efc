"""Upload endpoints of the shared HTTP app: POST /v1/images -> 202 + job, GET /v1/jobs/{id}."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Request, UploadFile
from pydantic import BaseModel

from ingest.batch import index_assets
from ingest.queueing import enqueue_pending
from ingest.uploads import (
    JobStatus,
    Upload,
    accept,
    check_uploads,
    job_status,
    recent_jobs,
)
from search.api.auth import Read, Write
from search.api.routes import ERRORS
from search.query import BadQuery

router = APIRouter(responses=ERRORS, tags=["uploads"])
MAX_FILES = 1000
MAX_META_CHARS = 10_000


class AcceptedOut(BaseModel):
    job: str
    assets: list[str]
    new: int
    duplicates: int


class JobOut(BaseModel):
    id: str
    kind: str
    created_at: datetime
    total: int
    done: bool
    states: dict[str, int]
    failures: list[dict[str, str]]


def _parse_meta(metadata: str | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    try:
        parsed = json.loads(metadata)
    except json.JSONDecodeError as error:
        raise BadQuery(f"metadata must be a JSON object: {error.msg}") from None
    if not isinstance(parsed, dict):
        raise BadQuery("metadata must be a JSON object")
    return parsed


@router.post("/v1/images", status_code=202, response_model=AcceptedOut, dependencies=[Write])
def upload_images(
    request: Request,
    background: BackgroundTasks,
    files: Annotated[list[UploadFile], File(description="one or more images")],
    metadata: Annotated[str | None, Form(max_length=MAX_META_CHARS)] = None,
) -> AcceptedOut:
    """Store the bytes by content, register them and index them (workers, or in background)."""
    if not 1 <= len(files) <= MAX_FILES:
        raise BadQuery(f"send between 1 and {MAX_FILES} files")
    meta = _parse_meta(metadata)
    runtime = request.app.state.runtime
    uploads = [Upload(f.filename or "upload", f.file.read()) for f in files]
    check_uploads(runtime, uploads)
    accepted = accept(runtime, uploads, meta)
    if runtime.settings.broker_url:
        enqueue_pending(runtime, _sender(request))
    else:
        version_id = runtime.live_version().id
        background.add_task(index_assets, runtime, version_id, sorted(set(accepted.asset_ids)))
    return AcceptedOut(
        job=accepted.job_id, assets=accepted.asset_ids, new=accepted.new,
        duplicates=accepted.duplicates,
    )  # fmt: skip


def _job_out(status: JobStatus) -> JobOut:
    return JobOut(
        id=status.id, kind=status.kind, created_at=status.created_at, total=status.total,
        done=status.done, states=status.states, failures=status.failures,
    )  # fmt: skip


@router.get("/v1/jobs/{job_id}", response_model=JobOut, dependencies=[Read])
def get_job(request: Request, job_id: str) -> JobOut:
    """Counts by state, and every failure with its reason."""
    return _job_out(job_status(request.app.state.runtime, job_id))


@router.get("/v1/jobs", response_model=list[JobOut], dependencies=[Read])
def list_jobs(request: Request) -> list[JobOut]:
    return [_job_out(status) for status in recent_jobs(request.app.state.runtime)]


def _sender(request: Request) -> Any:
    """One Celery app per HTTP app, made on first use."""
    state = request.app.state
    if getattr(state, "send_batch", None) is None:
        from workers.app import make_celery, sender

        state.send_batch = sender(make_celery(state.settings))
    return state.send_batch
