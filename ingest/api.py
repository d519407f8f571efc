"""Upload endpoints: POST /v1/images -> 202 + job, GET /v1/jobs/{id}; an asset's own
metadata: PATCH /v1/assets/{id}; DELETE /v1/assets/{id}.

Two routers, one per scope; the entry layer's app factory includes them behind the read and
write keys. How accepted work is indexed is the entry layer's decision too: it puts a
``SendWindow`` (workers: uploads are gathered into whole task messages) or ``None`` (index in
the background, in this process) on ``app.state.send_window``."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict

from core.runtime import Runtime
from ingest.batch import index_assets
from ingest.metadata import (
    Metadata,
    checked,
    checked_id,
    checked_metadata,
    delete_asset,
    update_metadata,
)
from ingest.queueing import queue_pending
from ingest.send_window import SendWindow
from ingest.uploads import (
    BadUpload,
    JobStatus,
    Upload,
    accept,
    job_status,
    recent_jobs,
    sort_uploads,
)

log = logging.getLogger(__name__)
read_router = APIRouter(tags=["uploads"])
write_router = APIRouter(tags=["uploads"])
MAX_FILES = 1000
MAX_META_CHARS = 10_000


class RejectedOut(BaseModel):
    filename: str
    stage: str
    reason: str


class AcceptedOut(BaseModel):
    """``assets``: the images' ids, in the order sent; ``rejected``: the files that are not
    images, kept as the job's failures with their reasons."""

    job: str
    assets: list[str]
    new: int
    duplicates: int
    rejected: list[RejectedOut]


class JobOut(BaseModel):
    id: str
    kind: str
    created_at: datetime
    total: int
    done: bool
    states: dict[str, int]
    failures: list[dict[str, str]]


def _parse_meta(metadata: str | None) -> Metadata:
    if metadata is None:
        return {}
    try:
        parsed = json.loads(metadata)
    except json.JSONDecodeError as error:
        raise BadUpload(f"metadata must be a JSON object: {error.msg}") from None
    return checked_metadata(parsed)


@write_router.post("/v1/images", status_code=202, response_model=AcceptedOut)
def upload_images(
    request: Request,
    background: BackgroundTasks,
    files: Annotated[list[UploadFile], File(description="one or more images")],
    metadata: Annotated[str | None, Form(max_length=MAX_META_CHARS)] = None,
) -> AcceptedOut:
    """Store the bytes by content, register them and index them (workers, or in background).
    Files that are not images are listed in ``rejected`` and in the job's failures, and the
    others go on; a request with no image at all is refused (415, or 413/422 for a file)."""
    if not 1 <= len(files) <= MAX_FILES:
        raise BadUpload(f"send between 1 and {MAX_FILES} files")
    meta = _parse_meta(metadata)
    runtime = request.app.state.runtime
    uploads = [Upload(f.filename or "upload", f.file.read()) for f in files]
    images, rejected = sort_uploads(runtime, uploads)
    accepted = accept(runtime, images, meta, rejected)
    window: SendWindow | None = request.app.state.send_window
    if window is not None:  # committed as pending: the window sends it, with what follows
        window.poke(accepted.version_id, len(set(accepted.asset_ids)))
    else:
        background.add_task(index_pending_here, runtime, accepted.version_id)
    return AcceptedOut(
        job=accepted.job_id, assets=accepted.asset_ids, new=accepted.new,
        duplicates=accepted.duplicates,
        rejected=[
            RejectedOut(filename=r.upload.filename, stage=r.error.stage, reason=r.error.reason)
            for r in rejected
        ],
    )  # fmt: skip


def index_pending_here(runtime: Runtime, version_id: int) -> None:
    """No broker: this process encodes the version's pending uploads. Rows are claimed first
    (pending -> queued), as the outbox claims them for workers, so that requests sending the
    same bytes at once never encode one row twice: each would have counted an attempt, as a
    redelivery does, and the third dead-lettered a good image as a worker crash."""

    def encode(version: int, ids: list[str]) -> None:
        try:
            index_assets(runtime, version, ids)
        except Exception:  # the rows stay queued: `clipdex verify --repair` finishes them
            log.exception("could not index %d uploaded assets in this process", len(ids))

    queue_pending(runtime.sessions, version_id, encode, runtime.settings.batch_size)


def _job_out(status: JobStatus) -> JobOut:
    return JobOut(
        id=status.id, kind=status.kind, created_at=status.created_at, total=status.total,
        done=status.done, states=status.states, failures=status.failures,
    )  # fmt: skip


@read_router.get("/v1/jobs/{job_id}", response_model=JobOut)
def get_job(request: Request, job_id: str) -> JobOut:
    """Counts by state, and every failure with its reason."""
    return _job_out(job_status(request.app.state.runtime, job_id))


@read_router.get("/v1/jobs", response_model=list[JobOut])
def list_jobs(request: Request) -> list[JobOut]:
    return [_job_out(status) for status in recent_jobs(request.app.state.runtime)]


class MetadataPatch(BaseModel):
    """``metadata``: keys to set (text, number, boolean or a list of them) or, with null, to
    remove; keys not named stay as they are."""

    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Any]


class AssetMetadataOut(BaseModel):
    id: str
    metadata: dict[str, str | list[str]]


class ForgottenOut(BaseModel):
    id: str
    kind: str
    paths: list[str]


@write_router.patch("/v1/assets/{asset_id}", response_model=AssetMetadataOut, tags=["assets"])
def patch_asset(request: Request, asset_id: str, body: MetadataPatch) -> AssetMetadataOut:
    """Update an asset's own metadata (catalog and stored payloads); nothing is re-encoded."""
    changes = checked(body.metadata, removals=True)
    asset_id = checked_id(asset_id)  # by id only over HTTP, never by a server-side path
    found, meta = update_metadata(request.app.state.runtime, asset_id, changes)
    return AssetMetadataOut(id=found, metadata=meta)


@write_router.delete("/v1/assets/{asset_id}", response_model=ForgottenOut, tags=["assets"])
def delete_asset_route(request: Request, asset_id: str) -> ForgottenOut:
    """Remove an upload (catalog, point, stored bytes) or forget a file's asset (catalog and
    point; the file itself is never touched, and a rescan of its folder brings it back)."""
    gone = delete_asset(request.app.state.runtime, asset_id)
    return ForgottenOut(id=gone.id, kind=gone.kind, paths=gone.paths)
