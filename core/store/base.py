"""The store interface and the plain types that cross it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Payload = dict[str, Any]

# Payload fields that filters use; each gets a payload index, nothing else does.
KEYWORD_FIELDS = ("folders", "format")
INTEGER_FIELDS = ("width", "height")
DATETIME_FIELDS = ("taken_at",)


class StoreError(RuntimeError):
    """The vector store refused or failed an operation."""


class StoreLocked(StoreError):
    """Another process holds the embedded store; only a Qdrant server allows several."""


@dataclass(frozen=True, slots=True)
class PointRecord:
    id: str
    vector: NDArray[np.float32]
    payload: Payload


@dataclass(frozen=True, slots=True)
class StoredHit:
    id: str
    score: float
    payload: Payload
    vector: NDArray[np.float32] | None = None


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Filters every backend understands. ``folder`` matches any ancestor folder of a path."""

    folder: str | None = None
    formats: tuple[str, ...] = ()
    min_width: int | None = None
    min_height: int | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None

    @property
    def empty(self) -> bool:
        return self == SearchFilter()


def as_utc(moment: datetime) -> datetime:
    """EXIF times carry no zone; clipdex treats naive times as UTC everywhere."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def rfc3339(moment: datetime) -> str:
    """Qdrant datetime payloads and ranges; naive times (EXIF has no zone) are taken as UTC."""
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat()


def vector_as_list(vector: NDArray[np.float32], dim: int) -> list[float]:
    """A query vector as the backends take it; a wrong dimension is the caller's error."""
    if vector.shape != (dim,):
        raise StoreError(f"vector has shape {vector.shape}, the collection holds {dim}-d vectors")
    return [float(x) for x in vector]


def stored_hit(point_id: Any, score: float, payload: Any, vector: Any) -> StoredHit:
    """A backend's point (any id type, optional payload and vector) as a :class:`StoredHit`."""
    array = None if vector is None else np.asarray(vector, dtype=np.float32)
    return StoredHit(str(point_id), float(score), dict(payload or {}), array)


class VectorIndex(Protocol):
    """One collection: the vectors of one index version."""

    name: str
    dim: int

    def upsert(self, points: Sequence[PointRecord]) -> None:
        """Insert or replace points; returns once the write is applied (wait=True)."""
        ...

    def set_payloads(self, payloads: Mapping[str, Payload]) -> None:
        """Replace the whole payload of existing points (a move or a new duplicate path)."""
        ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def search(
        self,
        vector: NDArray[np.float32],
        limit: int,
        offset: int = 0,
        search_filter: SearchFilter | None = None,
        exact: bool = False,
        with_vectors: bool = False,
    ) -> list[StoredHit]: ...

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredHit]: ...

    def existing_ids(self, ids: Sequence[str]) -> set[str]: ...

    def count(self) -> int: ...

    def iter_ids(self) -> Iterator[str]: ...

    def optimize(self) -> None:
        """Build whatever index the backend builds lazily (HNSW in Qdrant Edge)."""
        ...


class VectorStore(Protocol):
    """A place that holds collections; server, embedded or in-memory."""

    kind: str

    def open_index(self, name: str, dim: int) -> VectorIndex:
        """Open the collection, creating it (with payload indexes) when it does not exist."""
        ...

    def drop_index(self, name: str) -> None:
        """Delete a collection and its points; nothing happens when it does not exist."""
        ...

    def point_alias(self, alias: str, name: str) -> None:
        """Make ``alias`` name collection ``name`` in one atomic step (a Qdrant server's
        collection aliases); stores without aliases do nothing (the catalog decides)."""
        ...

    def close(self) -> None: ...
