"""Catalog tables. Qdrant is an index that can always be rebuilt from these and the files."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AssetState(StrEnum):
    """Per-asset state within one index version (stored as its string value)."""

    PENDING = "pending"
    QUEUED = "queued"
    PROCESSING = "processing"
    INDEXED = "indexed"
    FAILED = "failed"


class VersionState(StrEnum):
    """Lifecycle of an index version. Exactly the ``live`` one has ``active`` true."""

    BUILDING = "building"
    READY = "ready"
    LIVE = "live"
    RETIRED = "retired"


class Asset(Base):
    """One piece of content. id = uuid5(namespace, sha256) = the Qdrant point id."""

    __tablename__ = "assets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # EXIF text, searchable by keyword and filterable (camera) -- None when absent.
    camera_make: Mapped[str | None] = mapped_column(String(128))
    camera_model: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    # The user's own key/value metadata (manifests, uploads, ``clipdex tag``, zero-shot tags).
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Library(Base):
    """A folder the user asked clipdex to keep indexed (``clipdex library add``)."""

    __tablename__ = "libraries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    excludes: Mapped[list[str]] = mapped_column(JSON, default=list)  # gitignore-style globs
    include_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_scan_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_scan: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # counts of the last scan


class Location(Base):
    """A path where some asset's bytes were seen. Many locations may share one asset."""

    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)


class IndexVersion(Base):
    """A collection of vectors from one model. Never mix two models in one collection."""

    __tablename__ = "index_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(128), unique=True)
    architecture: Mapped[str] = mapped_column(String(128))
    pretrained: Mapped[str] = mapped_column(Text)
    open_clip_version: Mapped[str] = mapped_column(String(32))
    preprocess: Mapped[dict[str, Any]] = mapped_column(JSON)
    dim: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=VersionState.BUILDING)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AssetIndexState(Base):
    __tablename__ = "asset_index_states"
    __table_args__ = (Index("ix_asset_index_states_version_state", "index_version_id", "state"),)

    asset_id: Mapped[str] = mapped_column(
        ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True
    )
    index_version_id: Mapped[int] = mapped_column(
        ForeignKey("index_versions.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Failure(Base):
    """A file that could not be indexed, with the stage and reason. One row per path."""

    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    asset_id: Mapped[str | None] = mapped_column(String(36), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_failed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class IngestRun(Base):
    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    roots: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seconds: Mapped[float | None] = mapped_column(Float)


class TextSet(Base):
    """A named collection of texts (captions, labels) encoded by one index version's model."""

    __tablename__ = "text_sets"
    __table_args__ = (UniqueConstraint("name", "index_version_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    index_version_id: Mapped[int] = mapped_column(
        ForeignKey("index_versions.id", ondelete="CASCADE")
    )
    collection: Mapped[str] = mapped_column(String(200), unique=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Job(Base):
    """A unit of accepted work a client can follow (an HTTP upload, a distributed ingest)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    index_version_id: Mapped[int] = mapped_column(
        ForeignKey("index_versions.id", ondelete="CASCADE")
    )
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class JobAsset(Base):
    __tablename__ = "job_assets"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(
        ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True
    )
    filename: Mapped[str] = mapped_column(Text)
