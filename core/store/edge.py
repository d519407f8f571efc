"""Embedded default: Qdrant Edge, Qdrant's own in-process engine, one shard per collection.

Chosen by measurement over qdrant-client's local mode (pure Python, brute force): see
``bench/store_bench.py`` and the README for the figures.
"""

from __future__ import annotations

import fcntl
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
from numpy.typing import NDArray

from core.diskspace import check_free_space
from core.store.base import (
    DATETIME_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    Payload,
    PointRecord,
    SearchFilter,
    StoredHit,
    StoreError,
    StoreLocked,
    keyword_missing,
    metadata_keys,
    ranked_slice,
    stored_hit,
    vector_as_list,
)
from core.store.edge_faults import open_failure, reads
from core.store.edge_files import (
    has_keywords,
    raise_scan_thresholds,
    set_aside_folder,
    stored_dim,
)
from core.store.edge_filter import to_edge_filter
from core.store.edge_lock import locked_message, take_lock
from core.store.edge_tuning import EdgeTuning
from core.store.edge_warm import prefetch_vectors, read_for_open
from core.store.keywords import KEYWORDS_VECTOR, payload_words, sparse_of

_SCROLL_PAGE = 1024
OPEN_FLOOR = 64 * 1024 * 1024  # free space an existing collection needs to open (see EdgeStore)


_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


class EdgeStore:
    """Collections live in ``root/<name>``. One process at a time, enforced by a lock file."""

    kind = "embedded"

    def __init__(
        self, root: Path, min_free_bytes: int = 0, tuning: EdgeTuning | None = None
    ) -> None:
        """``min_free_bytes``: the free space below which no collection is created (and none
        opened below ``OPEN_FLOOR``): its mapped files are sparse, and a write with no room
        left is a SIGBUS. Bulk writes check the full floor first (ingest, reindex, repair,
        uploads), so a nearly full disk still serves searches. ``tuning``: the layout of
        new collections and how every collection is searched."""
        self._root = root
        self._min_free_bytes = min_free_bytes
        self._tuning = tuning or EdgeTuning()
        root.mkdir(parents=True, exist_ok=True)
        self._lock_file = take_lock(root)
        self._open: dict[str, EdgeIndex] = {}

    def open_index(self, name: str, dim: int) -> EdgeIndex:
        if name in self._open:
            return self._open[name]
        path = self._path(name)
        created = True
        try:
            created = not (path.is_dir() and any(path.iterdir()))
            floor = self._min_free_bytes if created else min(self._min_free_bytes, OPEN_FLOOR)
            check_free_space([self._root], floor)
            if created:
                sparse = {KEYWORDS_VECTOR: self._tuning.keyword_vectors()}
                config = self._tuning.collection_config(dim, sparse)
                shard = qe.EdgeShard.create(str(path), config)
            else:
                raise_scan_thresholds(path, self._tuning.segment_scan)
                read_for_open(path)
                shard = qe.EdgeShard.load(str(path))
                prefetch_vectors(path)
        except StoreError:
            raise  # too little free space
        except Exception as error:
            if "WouldBlock" in str(error):
                raise StoreLocked(locked_message(self._root)) from error
            raise open_failure(name, error, created) from error
        size = None if created else stored_dim(path)
        if size is not None and size != dim:  # the catalog's dim was changed (a bad restore)
            shard.close()
            raise StoreError(f"collection {name!r} holds {size}-d vectors, not {dim}-d")
        index = EdgeIndex(
            name, dim, shard, self._tuning, keywords=has_keywords(path, KEYWORDS_VECTOR), path=path
        )
        if created:
            index.create_payload_indexes()
        self._open[name] = index
        return index

    def drop_index(self, name: str) -> None:
        index = self._open.pop(name, None)
        if index is not None:
            index.close()
        path = self._path(name)
        if path.is_dir():
            shutil.rmtree(path)

    def _path(self, name: str) -> Path:
        """A collection's folder: one plain name under the root, never a path out of it (a
        name comes from the catalog, which a restore or a hand edit may have changed)."""
        if not _COLLECTION_NAME.fullmatch(name):
            raise StoreError(f"refusing the collection name {name!r}: not a plain folder name")
        return self._root / name

    def point_alias(self, alias: str, name: str) -> None:
        """The embedded store has no aliases: the catalog's live version is the only pointer."""

    def set_aside(self, name: str) -> str | None:
        """Rename the collection's folder out of the way (``edge_files.set_aside_folder``)."""
        index = self._open.pop(name, None)
        if index is not None:
            index.close()
        return set_aside_folder(self._path(name))

    def close(self) -> None:
        for index in self._open.values():
            index.close()
        self._open.clear()
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()


class EdgeIndex:
    def __init__(
        self,
        name: str,
        dim: int,
        shard: qe.EdgeShard,
        tuning: EdgeTuning | None = None,
        keywords: bool = True,
        path: Path | None = None,
    ) -> None:
        self.name = name
        self._path = path
        self.dim = dim
        self._shard = shard
        self._closed = False
        self._tuning = tuning or EdgeTuning()
        self._indexed: set[str] = set(shard.info().payload_schema)
        # Collections made before keyword search have no keyword vector (also learnt on write).
        self._keywords = keywords

    def create_payload_indexes(self) -> None:
        kinds = (
            [(f, qe.PayloadSchemaType.Keyword) for f in KEYWORD_FIELDS]
            + [(f, qe.PayloadSchemaType.Integer) for f in INTEGER_FIELDS]
            + [(f, qe.PayloadSchemaType.Datetime) for f in DATETIME_FIELDS]
        )
        for field_name, schema in kinds:
            self._index_field(field_name, schema)

    def _index_field(self, field_name: str, schema: qe.PayloadSchemaType) -> None:
        if field_name not in self._indexed:
            params = self._tuning.field_index(schema)
            self._shard.update(qe.UpdateOperation.create_field_index(field_name, params))
            self._indexed.add(field_name)

    def _index_metadata(self, payloads: Iterable[Payload]) -> None:
        for key in metadata_keys(payloads):
            self._index_field(key, qe.PayloadSchemaType.Keyword)

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        self._index_metadata(p.payload for p in points)
        if self._keywords and self._try_keywords(
            qe.UpdateOperation.upsert_points([self._point(p, keywords=True) for p in points])
        ):
            return
        batch = [self._point(p, keywords=False) for p in points]
        self._shard.update(qe.UpdateOperation.upsert_points(batch))

    def _point(self, point: PointRecord, keywords: bool) -> qe.Point:
        dense = vector_as_list(point.vector, self.dim)
        vector: Any = {"": dense, KEYWORDS_VECTOR: _sparse(point.payload)} if keywords else dense
        return qe.Point(point.id, vector, point.payload)

    def set_payloads(self, payloads: Mapping[str, Payload]) -> None:
        """The payload and the keyword vector derived from it, together."""
        self._index_metadata(payloads.values())
        for point_id, payload in payloads.items():
            self._shard.update(qe.UpdateOperation.overwrite_payload([point_id], payload))
            if self._keywords:
                vectors = qe.PointVectors(point_id, {KEYWORDS_VECTOR: _sparse(payload)})
                self._try_keywords(qe.UpdateOperation.update_vectors([vectors]))

    def _try_keywords(self, operation: qe.UpdateOperation) -> bool:
        """Apply a write that carries keyword vectors; False (and remembered) when this
        collection predates them."""
        try:
            self._shard.update(operation)
        except Exception as error:
            if "Not existing vector name" not in str(error):
                raise
            self._keywords = False
            return False
        return True

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._shard.update(qe.UpdateOperation.delete_points(list(ids)))

    @reads
    def search(
        self,
        vector: NDArray[np.float32],
        limit: int,
        offset: int = 0,
        search_filter: SearchFilter | None = None,
        exact: bool = False,
        with_vectors: bool = False,
    ) -> list[StoredHit]:
        edge_filter = to_edge_filter(search_filter)
        dense = qe.Query.Nearest(vector_as_list(vector, self.dim))
        # Graph or scan is decided by the page, not by how deep a tie makes the window grow:
        # a window past the beam is a scan; within it, tie groups are completed up to the beam.
        exact = exact or offset + limit + 1 > self._tuning.hnsw_ef

        def query(fetch: int, with_payload: bool) -> list[StoredHit]:
            return self._query(dense, fetch, edge_filter, exact, with_vectors, with_payload)

        retrieve, reach = partial(self.retrieve, with_vectors=with_vectors), self._tuning.hnsw_ef
        return ranked_slice(query, retrieve, offset, limit, None if exact else reach)

    def _query(
        self,
        dense: Any,
        fetch: int,
        edge_filter: qe.Filter | None,
        exact: bool,
        with_vectors: bool,
        with_payload: bool,
    ) -> list[StoredHit]:
        """The best ``fetch`` (vectors only with the payloads: a deep page retrieves both)."""
        params = self._tuning.search_params(exact, filtered=edge_filter is not None, depth=fetch)
        wanted = [""] if with_vectors and with_payload else False
        request = qe.QueryRequest(
            limit=fetch, query=dense, with_payload=with_payload, with_vector=wanted,
            filter=edge_filter, params=params,
        )  # fmt: skip
        points = self._shard.query(request)
        # A filtered graph walk can come back short (see edge_tuning): when more points match,
        # the window is answered again by an exact scan of the matches.
        short = edge_filter is not None and not params.exact and len(points) < fetch
        if short and self._count(edge_filter) > len(points):
            return self._query(dense, fetch, edge_filter, True, with_vectors, with_payload)
        return [stored_hit(p.id, p.score, p.payload, p.vector) for p in points]

    @reads
    def keyword_search(
        self,
        words: Sequence[str],
        limit: int,
        search_filter: SearchFilter | None = None,
        with_vectors: bool = False,
    ) -> list[StoredHit]:
        indices, values = sparse_of(words)
        if not indices:
            return []
        sparse = qe.Query.Nearest(qe.SparseVector(indices, values), using=KEYWORDS_VECTOR)
        edge_filter = to_edge_filter(search_filter)

        def query(fetch: int, with_payload: bool) -> list[StoredHit]:
            request = qe.QueryRequest(
                limit=fetch,
                query=sparse,
                with_payload=with_payload,
                with_vector=[""] if with_vectors and with_payload else False,
                filter=edge_filter,
            )
            try:
                points = self._shard.query(request)
            except Exception as error:
                if "Not existing vector name" in str(error):
                    raise keyword_missing(self.name) from error
                raise
            return [stored_hit(p.id, p.score, p.payload, p.vector) for p in points]

        return ranked_slice(query, partial(self.retrieve, with_vectors=with_vectors), 0, limit)

    @reads
    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredHit]:
        if not ids:
            return []
        wanted = [""] if with_vectors else False  # the dense vector, not the keyword one
        records = self._shard.retrieve(list(ids), with_payload=True, with_vector=wanted)
        return [stored_hit(r.id, 1.0, r.payload, r.vector) for r in records]

    @reads
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        records = self._shard.retrieve(list(ids), with_payload=False, with_vector=False)
        return {str(r.id) for r in records}

    @reads
    def count(self, search_filter: SearchFilter | None = None) -> int:
        return self._count(to_edge_filter(search_filter))

    @reads
    def count_if_cheap(self, search_filter: SearchFilter | None, limit: int) -> int | None:
        edge_filter = to_edge_filter(search_filter)
        if edge_filter is not None:
            estimate = self._shard.count(qe.CountRequest(exact=False, filter=edge_filter))
            if int(estimate) > limit:
                return None
        return self._count(edge_filter)

    def _count(self, edge_filter: qe.Filter | None) -> int:
        if edge_filter is None:
            # The shard's point count: each segment's live points summed, as the exact count
            # sums them (deleted and replaced points are out; tests/test_store_graph.py checks
            # it against the listed ids), without visiting every id (53 ms at 1M points). It
            # would also count points deferred by ``prevent_unoptimized``, which EdgeTuning
            # leaves off.
            return int(self._shard.info().points_count)
        return int(self._shard.count(qe.CountRequest(exact=True, filter=edge_filter)))

    def iter_ids(self) -> Iterator[str]:
        offset: Any = None
        while True:
            ids, offset = self._id_page(offset)
            yield from ids
            if offset is None:
                return

    @reads
    def _id_page(self, offset: Any) -> tuple[list[str], Any]:
        records, after = self._shard.scroll(
            qe.ScrollRequest(offset=offset, limit=_SCROLL_PAGE, with_payload=False)
        )
        return [str(r.id) for r in records], after

    @reads
    def build_due(self) -> int:
        info = self._shard.info()
        # The count includes keyword (sparse) vectors, indexed as they are written: one a point.
        sparse = info.points_count if self._keywords else 0
        dense = max(0, info.indexed_vectors_count - sparse)
        return self._tuning.unindexed_due(info.points_count, dense)

    def optimize(self) -> None:
        """Build the graph over every segment that is due one. Holds the GIL throughout: the
        whole process waits (see ``core.store.edge_tuning``). A segment whose filter-scan
        threshold was raised (``core.store.edge_files``) is read again: the shard is reopened."""
        path = self._path
        try:
            self._shard.optimize()
            raised = path is not None and raise_scan_thresholds(path, self._tuning.segment_scan)
            if raised:
                self.close()
            if path is not None:  # the new segments' files, as before an open
                read_for_open(path)
            if raised:
                self._shard = qe.EdgeShard.load(str(path))
                self._closed = False
        except Exception as error:  # a full disk, a damaged segment: one line, not a trace
            raise StoreError(
                f"building the search graph of {self.name!r} failed: {error}"
            ) from error
        if path is not None:
            prefetch_vectors(path)

    def close(self) -> None:
        """Once: after a reopen that failed, the store's own close has nothing left to do."""
        if self._closed:
            return
        self._closed = True
        self._shard.flush()
        self._shard.close()


def _sparse(payload: Payload) -> qe.SparseVector:
    return qe.SparseVector(*sparse_of(payload_words(payload)))
