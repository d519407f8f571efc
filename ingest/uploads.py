"""HTTP uploads: bytes stored by content under the blob root, registered in the catalog as
pending, and followed as a job. The same bytes uploaded many times at once are one asset."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.catalog.models import (
    Asset,
    AssetIndexState,
    AssetState,
    Failure,
    Job,
    JobAsset,
    Location,
)
from core.diskspace import check_free_space, write_paths
from core.ids import asset_id_for_digest, sha256_of_bytes
from core.images import ImageRejected, identify
from core.runtime import Runtime
from ingest.metadata import Metadata, apply_metadata, refresh_payloads
from ingest.records import record_failure

_REGISTER_TRIES = 5


class UnknownJob(LookupError):
    pass


class BadUpload(ValueError):
    """The upload request itself is malformed (not the images in it); the message says how."""


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class AcceptedUpload:
    job_id: str
    version_id: int
    asset_ids: list[str]
    new: int
    duplicates: int


@dataclass(slots=True)
class JobStatus:
    id: str
    kind: str
    created_at: datetime
    total: int
    states: dict[str, int]
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not any(self.states[s] for s in ("pending", "queued", "processing"))


@dataclass(frozen=True, slots=True)
class Rejected:
    """An uploaded file that is not an image clipdex can use, and why."""

    upload: Upload
    error: ImageRejected


def sort_uploads(
    runtime: Runtime, uploads: Sequence[Upload]
) -> tuple[list[Upload], list[Rejected]]:
    """The images, and the files that are not (read from their headers, nothing stored). When
    none is an image, the request is refused: the first rejection is raised, naming its file."""
    limits = runtime.decode_limits()
    images: list[Upload] = []
    rejected: list[Rejected] = []
    for upload in uploads:
        try:
            identify(upload.data, limits)
        except ImageRejected as error:
            rejected.append(Rejected(upload, error))
        else:
            images.append(upload)
    if not images:
        first = rejected[0]
        others = len(rejected) - 1
        more = f" (and {others} more file{'s' * (others > 1)})" if others else ""
        raise ImageRejected(
            first.error.stage, f"{first.upload.filename}: {first.error.reason}{more}",
            first.error.kind,
        )  # fmt: skip
    return images, rejected


def blob_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256[2:4] / sha256


def store_blob(root: Path, sha256: str, data: bytes) -> Path:
    """Write once, atomically: concurrent writers of the same bytes all end with one file."""
    path = blob_path(root, sha256)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temporary, path)
    return path


def accept(
    runtime: Runtime, uploads: Sequence[Upload], meta: Metadata, rejected: Sequence[Rejected] = ()
) -> AcceptedUpload:
    """Store, register and follow ``uploads``; ``meta`` (checked metadata) is merged into each
    asset's own metadata before anything is encoded (and into the payload of points already
    stored: the same bytes uploaded again). The ``rejected`` files of the same request are
    kept too, as failed assets of the job with their reasons (``clipdex failures``, the job's
    failures), so that nothing sent is lost and the rest of the batch goes on."""
    settings = runtime.settings  # below the free-space floor nothing new is stored
    check_free_space(write_paths(settings.home, settings.blobs, settings.catalog_url),
                     settings.min_free_bytes)  # fmt: skip
    version = runtime.live_version()
    asset_ids: list[str] = []
    new = 0
    for upload in uploads:
        asset_id, created = keep_bytes(runtime, version.id, upload.data)
        new += created
        asset_ids.append(asset_id)
    failed = [_keep_rejected(runtime, version.id, reject) for reject in rejected]
    job_id = str(uuid.uuid4())
    with runtime.sessions() as session:
        session.add(Job(id=job_id, kind="upload", index_version_id=version.id, meta=meta))
        names: dict[str, str] = {}
        for upload, asset_id in zip(uploads, asset_ids, strict=True):
            names.setdefault(asset_id, upload.filename)
        for reject, asset_id in zip(rejected, failed, strict=True):
            names.setdefault(asset_id, reject.upload.filename)
        session.add_all(JobAsset(job_id=job_id, asset_id=a, filename=n) for a, n in names.items())
        changed = apply_metadata(session, dict.fromkeys(asset_ids, meta)) if meta else set()
        session.commit()
    if changed:
        refresh_payloads(runtime, changed)
    return AcceptedUpload(job_id, version.id, asset_ids, new, len(uploads) - new)


def _keep_rejected(runtime: Runtime, version_id: int, reject: Rejected) -> str:
    """Store a file that is not an image as a failed asset with its failure row."""
    digest = sha256_of_bytes(reject.upload.data)
    path = store_blob(runtime.settings.blobs, digest, reject.upload.data)
    failure = (reject.error.stage, reject.error.reason)
    _register(runtime, version_id, digest, path, len(reject.upload.data), failure)
    return asset_id_for_digest(digest)


def keep_bytes(runtime: Runtime, version_id: int, data: bytes) -> tuple[str, bool]:
    """Store ``data`` by content under the blob root and register it as pending in
    ``version_id`` (uploads, downloaded URLs); returns the asset id and whether it is new."""
    digest = sha256_of_bytes(data)
    path = store_blob(runtime.settings.blobs, digest, data)
    created = _register(runtime, version_id, digest, path, len(data))
    return asset_id_for_digest(digest), created


def _register(
    runtime: Runtime,
    version_id: int,
    digest: str,
    path: Path,
    size: int,
    failure: tuple[str, str] | None = None,
) -> bool:
    """Asset, location and pending state, created at most once whoever races us. With a
    ``failure`` (stage, reason: a file that is not an image), the state is failed and its
    failure row is written in the same transaction (or updated: the same bytes again)."""
    asset_id = asset_id_for_digest(digest)
    for _ in range(_REGISTER_TRIES):
        with runtime.sessions() as session:
            try:
                created = session.get(Asset, asset_id) is None
                if created:
                    session.add(Asset(id=asset_id, sha256=digest, size_bytes=size))
                if (
                    session.scalars(select(Location).where(Location.path == str(path))).first()
                    is None
                ):
                    mtime = path.stat().st_mtime_ns
                    session.add(
                        Location(path=str(path), asset_id=asset_id, size_bytes=size, mtime_ns=mtime)
                    )
                if session.get(AssetIndexState, (asset_id, version_id)) is None:
                    session.add(
                        AssetIndexState(
                            asset_id=asset_id,
                            index_version_id=version_id,
                            state=AssetState.PENDING if failure is None else AssetState.FAILED,
                        )
                    )
                if failure is not None:
                    record_failure(session, str(path), *failure, asset_id)
                session.commit()
                return created
            except IntegrityError:
                session.rollback()  # another request registered it first; look again
    raise RuntimeError(f"could not register asset {asset_id} after {_REGISTER_TRIES} tries")


def job_status(runtime: Runtime, job_id: str) -> JobStatus:
    try:
        job_id = str(uuid.UUID(job_id))
    except ValueError:
        raise UnknownJob(f"no job with id {job_id!r}") from None
    with runtime.sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise UnknownJob(f"no job with id {job_id}")
        states = {state.value: 0 for state in AssetState}
        query = (
            select(AssetIndexState.state, func.count())
            .join(JobAsset, JobAsset.asset_id == AssetIndexState.asset_id)
            .where(
                JobAsset.job_id == job_id, AssetIndexState.index_version_id == job.index_version_id
            )
            .group_by(AssetIndexState.state)
        )
        states.update({state: count for state, count in session.execute(query)})
        failures = session.execute(
            select(JobAsset.filename, Failure.stage, Failure.reason)
            .join(Failure, Failure.asset_id == JobAsset.asset_id)
            .where(JobAsset.job_id == job_id)
        ).all()
        total = sum(states.values())
        return JobStatus(
            job.id, job.kind, job.created_at, total, states,
            [{"filename": f, "stage": s, "reason": r} for f, s, r in failures],
        )  # fmt: skip


def recent_jobs(runtime: Runtime, limit: int = 20) -> list[JobStatus]:
    with runtime.sessions() as session:
        ids = session.scalars(select(Job.id).order_by(Job.created_at.desc()).limit(limit)).all()
    return [job_status(runtime, job_id) for job_id in ids]
