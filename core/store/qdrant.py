"""qdrant-client backend: a Qdrant server (``url=``), or local mode (path or ``:memory:``).

The server path and the in-memory path are the same code; tests exercise it through
``:memory:``, production through ``CLIPDEX_QDRANT_URL``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from core.store.base import (
    DATETIME_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    Payload,
    PointRecord,
    SearchFilter,
    StoredHit,
    StoreError,
    as_utc,
    stored_hit,
    vector_as_list,
)

_SCROLL_PAGE = 1024


class QdrantStore:
    def __init__(self, client: QdrantClient, kind: str) -> None:
        self._client = client
        self.kind = kind
        # Local mode is brute force: payload indexes and search params do nothing there.
        self._server = kind == "server"

    def open_index(self, name: str, dim: int) -> QdrantIndex:
        if not self._client.collection_exists(name):
            self._client.create_collection(
                name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
            )
            schemas = (
                [(f, models.PayloadSchemaType.KEYWORD) for f in KEYWORD_FIELDS]
                + [(f, models.PayloadSchemaType.INTEGER) for f in INTEGER_FIELDS]
                + [(f, models.PayloadSchemaType.DATETIME) for f in DATETIME_FIELDS]
            )
            for field_name, schema in schemas if self._server else []:
                self._client.create_payload_index(name, field_name, schema, wait=True)
        else:
            existing = self._client.get_collection(name).config.params.vectors
            size = getattr(existing, "size", None)
            if size is not None and size != dim:
                raise StoreError(f"collection {name!r} holds {size}-d vectors, not {dim}-d")
        return QdrantIndex(self._client, name, dim, self._server)

    def drop_index(self, name: str) -> None:
        if self._client.collection_exists(name):
            self._client.delete_collection(name)

    def point_alias(self, alias: str, name: str) -> None:
        """One ``update_collection_aliases`` call: readers of the alias never see it missing."""
        if not self._server:
            return
        existing = {a.alias_name for a in self._client.get_aliases().aliases}
        actions: list[Any] = []
        if alias in existing:
            actions.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            )
        actions.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=name, alias_name=alias)
            )
        )
        self._client.update_collection_aliases(change_aliases_operations=actions)

    def close(self) -> None:
        self._client.close()


class QdrantIndex:
    def __init__(self, client: QdrantClient, name: str, dim: int, server: bool) -> None:
        self._client = client
        self.name = name
        self.dim = dim
        self._server = server

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        structs = [
            models.PointStruct(
                id=p.id, vector=vector_as_list(p.vector, self.dim), payload=p.payload
            )
            for p in points
        ]
        self._client.upsert(self.name, points=structs, wait=True)

    def set_payloads(self, payloads: Mapping[str, Payload]) -> None:
        for point_id, payload in payloads.items():
            self._client.overwrite_payload(self.name, payload=payload, points=[point_id], wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._client.delete(self.name, points_selector=list(ids), wait=True)

    def search(
        self,
        vector: NDArray[np.float32],
        limit: int,
        offset: int = 0,
        search_filter: SearchFilter | None = None,
        exact: bool = False,
        with_vectors: bool = False,
    ) -> list[StoredHit]:
        response = self._client.query_points(
            self.name,
            query=vector_as_list(vector, self.dim),
            limit=limit,
            offset=offset or None,
            query_filter=_qdrant_filter(search_filter),
            search_params=models.SearchParams(exact=exact) if self._server else None,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return [stored_hit(p.id, p.score, p.payload, p.vector) for p in response.points]

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredHit]:
        if not ids:
            return []
        records = self._client.retrieve(
            self.name, ids=list(ids), with_payload=True, with_vectors=with_vectors
        )
        return [stored_hit(r.id, 1.0, r.payload, r.vector) for r in records]

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        records = self._client.retrieve(
            self.name, ids=list(ids), with_payload=False, with_vectors=False
        )
        return {str(r.id) for r in records}

    def count(self) -> int:
        return int(self._client.count(self.name, exact=True).count)

    def iter_ids(self) -> Iterator[str]:
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.name, limit=_SCROLL_PAGE, offset=offset, with_payload=False
            )
            yield from (str(r.id) for r in records)
            if offset is None:
                return

    def optimize(self) -> None:
        """A Qdrant server builds HNSW in the background; local mode has none to build."""


def _qdrant_filter(search_filter: SearchFilter | None) -> models.Filter | None:
    if search_filter is None or search_filter.empty:
        return None
    must: list[Any] = []
    if search_filter.folder:
        must.append(
            models.FieldCondition(
                key="folders", match=models.MatchValue(value=search_filter.folder)
            )
        )
    if search_filter.formats:
        must.append(
            models.FieldCondition(
                key="format", match=models.MatchAny(any=list(search_filter.formats))
            )
        )
    if search_filter.min_width is not None:
        must.append(
            models.FieldCondition(key="width", range=models.Range(gte=search_filter.min_width))
        )
    if search_filter.min_height is not None:
        must.append(
            models.FieldCondition(key="height", range=models.Range(gte=search_filter.min_height))
        )
    if search_filter.taken_after is not None or search_filter.taken_before is not None:
        after, before = search_filter.taken_after, search_filter.taken_before
        must.append(
            models.FieldCondition(
                key="taken_at",
                range=models.DatetimeRange(
                    gte=as_utc(after) if after else None, lt=as_utc(before) if before else None
                ),
            )
        )
    return models.Filter(must=must)
