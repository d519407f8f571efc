"""The store interface and the plain types that cross it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Payload = dict[str, Any]

# Payload fields that filters use; each gets a payload index, nothing else does. User
# metadata keys (``meta.<key>``) get a keyword index when first filtered on.
KEYWORD_FIELDS = ("folders", "format", "orientation", "camera_make", "camera_model")
INTEGER_FIELDS = ("width", "height", "bytes")
DATETIME_FIELDS = ("taken_at",)
META_PREFIX = "meta."
ORIENTATIONS = ("portrait", "landscape", "square")


class StoreError(RuntimeError):
    """The vector store refused or failed an operation."""


class StoreLocked(StoreError):
    """Another process holds the embedded store; only a Qdrant server allows several."""


class CollectionDamaged(StoreError):
    """A collection's files are there but cannot be loaded (a torn copy, a bad disk, a hand
    edit). The catalog is the source of truth: ``clipdex verify --repair`` sets the files aside
    (:meth:`VectorStore.set_aside`) and rebuilds the collection from it."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(
            f"the embedded collection {name!r} is damaged ({why}): `clipdex verify --repair` "
            "sets it aside and rebuilds it from the catalog (every image is encoded again), "
            "or restore the store from a backup"
        )
        self.name = name


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
    """Filters every backend understands. ``folder`` matches any ancestor folder of a path;
    ``metadata`` pairs match ``meta.<key>`` exactly (any element of a list value)."""

    folder: str | None = None
    formats: tuple[str, ...] = ()
    min_width: int | None = None
    min_height: int | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    max_width: int | None = None
    max_height: int | None = None
    orientation: str | None = None  # one of ORIENTATIONS
    min_bytes: int | None = None
    max_bytes: int | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return self == SearchFilter()


@dataclass(frozen=True, slots=True)
class Match:
    """``key`` equals one of ``values`` (for a list payload: any element does)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Between:
    """``low <= key <= high`` on a number; ``None`` leaves that side open."""

    key: str
    low: int | None
    high: int | None


@dataclass(frozen=True, slots=True)
class During:
    """``after <= key < before`` on a datetime; ``None`` leaves that side open."""

    key: str
    after: datetime | None
    before: datetime | None


Condition = Match | Between | During


def conditions(search_filter: SearchFilter | None) -> list[Condition]:
    """The filter as backend-neutral conditions, all of which must hold; each backend only
    spells these three shapes in its own types."""
    if search_filter is None or search_filter.empty:
        return []
    f = search_filter
    found: list[Condition] = []
    for key, value in (
        ("folders", f.folder), ("orientation", f.orientation),
        ("camera_make", f.camera_make), ("camera_model", f.camera_model),
    ):  # fmt: skip
        if value:
            found.append(Match(key, (value,)))
    if f.formats:
        found.append(Match("format", f.formats))
    found.extend(Match(META_PREFIX + key, (value,)) for key, value in f.metadata)
    for key, low, high in (
        ("width", f.min_width, f.max_width), ("height", f.min_height, f.max_height),
        ("bytes", f.min_bytes, f.max_bytes),
    ):  # fmt: skip
        if low is not None or high is not None:
            found.append(Between(key, low, high))
    if f.taken_after is not None or f.taken_before is not None:
        found.append(During("taken_at", f.taken_after, f.taken_before))
    return found


def metadata_keys(payloads: Iterable[Payload]) -> set[str]:
    """The ``meta.<key>`` payload paths these payloads carry. They are indexed when written
    (by a write key), never when a query names them: a read key must not make the store
    build indexes."""
    found: set[str] = set()
    for payload in payloads:
        meta = payload.get("meta")
        if isinstance(meta, dict):
            found.update(META_PREFIX + key for key in meta)
    return found


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
    """A backend's point (any id type, optional payload and vector) as a :class:`StoredHit`;
    of named vectors, the dense unnamed one."""
    if isinstance(vector, dict):
        vector = vector.get("")
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

    def keyword_search(
        self,
        words: Sequence[str],
        limit: int,
        search_filter: SearchFilter | None = None,
        with_vectors: bool = False,
    ) -> list[StoredHit]:
        """Points sharing at least one of ``words`` (see ``core.store.keywords``), best
        first by IDF-weighted overlap; ties by id, so every backend gives one order."""
        ...

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredHit]: ...

    def existing_ids(self, ids: Sequence[str]) -> set[str]: ...

    def count(self, search_filter: SearchFilter | None = None) -> int:
        """Exact number of points (matching the filter, when one is given)."""
        ...

    def count_if_cheap(self, search_filter: SearchFilter | None, limit: int) -> int | None:
        """The exact count where it comes cheap, else None: the whole collection where the
        backend keeps that number, or a filter whose estimated matches are at most ``limit``.
        An exact count visits every match (Qdrant Edge, 1M points: 13 ms for 100,000
        matches, 45 ms for 335,000), too dear to pay on every page of results."""
        ...

    def iter_ids(self) -> Iterator[str]: ...

    def build_due(self) -> int:
        """Vectors that :meth:`optimize` would put in a search graph now; 0 when nothing is
        due or when the backend builds by itself (a Qdrant server)."""
        ...

    def optimize(self) -> None:
        """Build whatever index the backend builds lazily (HNSW in Qdrant Edge)."""
        ...


def _rank(hit: StoredHit) -> tuple[float, str]:
    """Best first, equal scores (to 5 decimals) by id: backends break ties differently."""
    return (-round(hit.score, 5), hit.id)


# A tie group at the edge of a window is completed up to this many hits past the window; a
# bigger group of equal scores (one word every file shares) is cut where the backend cuts it.
TIE_REACH = 2048

Query = Callable[[int, bool], list[StoredHit]]


def ranked_slice(
    query: Query,
    retrieve: Callable[[list[str]], list[StoredHit]],
    offset: int,
    limit: int,
    reach: int | None = None,
) -> list[StoredHit]:
    """Hits ``offset`` to ``offset + limit`` of a ranking ordered by score, then id.

    ``query(n, with_payload)`` gives a backend's best ``n``, best first. Which of several
    equal scores a backend keeps at the end of its top ``n`` depends on ``n`` (a heap's
    choice), so pages cut from windows of different sizes repeated some hits and skipped
    others. Here, when the hit after the window ties with the last one wanted, the window is
    fetched again ``TIE_REACH`` deeper (or to ``reach``, the most a backend can fetch without
    changing how it searches): the tie group at its edge is then whole, and ordering by id
    decides it the same way for every page. A first page comes with its payloads; a deeper
    one, or a grown one, fetches ids and scores only and then its own hits' payloads."""
    if limit < 1:
        return []
    page = _ranked_slice(query, retrieve, offset, limit, reach, whole=True)
    if page is None:  # a hit was deleted between the ranking and its payload: rank again
        page = _ranked_slice(query, retrieve, offset, limit, reach, whole=False)
    return page or []


def _ranked_slice(
    query: Query,
    retrieve: Callable[[list[str]], list[StoredHit]],
    offset: int,
    limit: int,
    reach: int | None,
    whole: bool,
) -> list[StoredHit] | None:
    """None when ``whole`` and a hit of the page has no payload any more (deleted)."""
    window = offset + limit
    with_payload = offset == 0
    fetch = window + 1
    hits = query(fetch, with_payload)
    deepest = max(fetch, min(window + TIE_REACH, reach or window + TIE_REACH))
    if len(hits) == fetch < deepest and _rank(hits[-1])[0] == _rank(hits[window - 1])[0]:
        fetch, with_payload = deepest, False
        hits = query(fetch, with_payload)
    page = sorted(hits, key=_rank)[offset:window]
    if with_payload or not page:
        return page
    full = {hit.id: hit for hit in retrieve([hit.id for hit in page])}
    if whole and len(full) < len(page):
        return None
    return [replace(full[hit.id], score=hit.score) for hit in page if hit.id in full]


def keyword_missing(name: str) -> StoreError:
    return StoreError(
        f"collection {name!r} was built before keyword search existed; rebuild it with "
        "`clipdex reindex` to search by keyword"
    )


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

    def set_aside(self, name: str) -> str | None:
        """Move a damaged collection's files out of the way, so that :meth:`open_index`
        creates it empty; returns where they went. ``None`` where the store cannot (a server
        keeps its own storage: its operator restores the collection)."""
        ...

    def close(self) -> None: ...
