"""qdrant-client backend: a Qdrant server (``url=``), or local mode (path or ``:memory:``).

The server path and the in-memory path are the same code; tests exercise it through
``:memory:``, production through ``CLIPDEX_QDRANT_URL``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from core.store.base import (
    DATETIME_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    Between,
    Condition,
    Match,
    Payload,
    PointRecord,
    SearchFilter,
    StoredHit,
    StoreError,
    as_utc,
    conditions,
    keyword_missing,
    metadata_keys,
    ranked_slice,
    stored_hit,
    vector_as_list,
)
from core.store.keywords import KEYWORDS_VECTOR, payload_words, sparse_of

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
                name,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                sparse_vectors_config={
                    KEYWORDS_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
            )
            schemas = (
                [(f, models.PayloadSchemaType.KEYWORD) for f in KEYWORD_FIELDS]
                + [(f, models.PayloadSchemaType.INTEGER) for f in INTEGER_FIELDS]
                + [(f, models.PayloadSchemaType.DATETIME) for f in DATETIME_FIELDS]
            )
            for field_name, schema in schemas if self._server else []:
                self._client.create_payload_index(name, field_name, schema, wait=True)
        else:
            params = self._client.get_collection(name).config.params
            size = getattr(params.vectors, "size", None)
            if size is not None and size != dim:
                raise StoreError(f"collection {name!r} holds {size}-d vectors, not {dim}-d")
        sparse = self._client.get_collection(name).config.params.sparse_vectors or {}
        return QdrantIndex(self._client, name, dim, self._server, KEYWORDS_VECTOR in sparse)

    def drop_index(self, name: str) -> None:
        if self._client.collection_exists(name):
            self._client.delete_collection(name)

    def set_aside(self, name: str) -> str | None:
        """A server (or local mode) keeps its own storage; its operator restores it."""
        return None

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
    def __init__(
        self, client: QdrantClient, name: str, dim: int, server: bool, keywords: bool = True
    ) -> None:
        self._client = client
        self.name = name
        self.dim = dim
        self._server = server
        self._keywords = keywords  # False for collections made before keyword search
        self._indexed: set[str] = set()

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        self._index_metadata(p.payload for p in points)
        structs = [
            models.PointStruct(id=p.id, vector=self._vectors(p), payload=p.payload) for p in points
        ]
        self._client.upsert(self.name, points=structs, wait=True)

    def _vectors(self, point: PointRecord) -> Any:
        dense = vector_as_list(point.vector, self.dim)
        return {"": dense, KEYWORDS_VECTOR: _sparse(point.payload)} if self._keywords else dense

    def set_payloads(self, payloads: Mapping[str, Payload]) -> None:
        """The payload and the keyword vector derived from it, together."""
        self._index_metadata(payloads.values())
        for point_id, payload in payloads.items():
            self._client.overwrite_payload(self.name, payload=payload, points=[point_id], wait=True)
            if self._keywords:
                vectors = models.PointVectors(
                    id=point_id, vector={KEYWORDS_VECTOR: _sparse(payload)}
                )
                self._client.update_vectors(self.name, [vectors], wait=True)

    def _index_metadata(self, payloads: Iterable[Payload]) -> None:
        """A keyword index on each user-metadata key, made when a payload first carries it."""
        for key in metadata_keys(payloads) - self._indexed if self._server else ():
            self._client.create_payload_index(
                self.name, key, models.PayloadSchemaType.KEYWORD, wait=True
            )
            self._indexed.add(key)

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
        dense = vector_as_list(vector, self.dim)
        params = models.SearchParams(exact=exact) if self._server else None
        wanted: Any = [""] if with_vectors and self._keywords else with_vectors

        def query(fetch: int, with_payload: bool) -> list[StoredHit]:
            return self._query(dense, None, fetch, search_filter, params, wanted, with_payload)

        return ranked_slice(query, lambda ids: self.retrieve(ids, with_vectors), offset, limit)

    def keyword_search(
        self,
        words: Sequence[str],
        limit: int,
        search_filter: SearchFilter | None = None,
        with_vectors: bool = False,
    ) -> list[StoredHit]:
        if not self._keywords:
            raise keyword_missing(self.name)
        indices, values = sparse_of(words)
        if not indices:
            return []
        sparse = models.SparseVector(indices=indices, values=values)
        wanted: Any = [""] if with_vectors else False

        def query(fetch: int, with_payload: bool) -> list[StoredHit]:
            using = KEYWORDS_VECTOR
            return self._query(sparse, using, fetch, search_filter, None, wanted, with_payload)

        return ranked_slice(query, lambda ids: self.retrieve(ids, with_vectors), 0, limit)

    def _query(
        self,
        query: Any,
        using: str | None,
        fetch: int,
        search_filter: SearchFilter | None,
        params: models.SearchParams | None,
        with_vectors: Any,
        with_payload: bool,
    ) -> list[StoredHit]:
        """The best ``fetch`` (vectors only with the payloads: a deep page retrieves both)."""
        response = self._client.query_points(
            self.name,
            query=query,
            using=using,
            limit=fetch,
            query_filter=_qdrant_filter(search_filter),
            search_params=params,
            with_payload=with_payload,
            with_vectors=with_vectors if with_payload else False,
        )
        return [stored_hit(p.id, p.score, p.payload, p.vector) for p in response.points]

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredHit]:
        if not ids:
            return []
        wanted: Any = [""] if with_vectors and self._keywords else with_vectors
        records = self._client.retrieve(
            self.name, ids=list(ids), with_payload=True, with_vectors=wanted
        )
        return [stored_hit(r.id, 1.0, r.payload, r.vector) for r in records]

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        records = self._client.retrieve(
            self.name, ids=list(ids), with_payload=False, with_vectors=False
        )
        return {str(r.id) for r in records}

    def count(self, search_filter: SearchFilter | None = None) -> int:
        counted = self._client.count(
            self.name, count_filter=_qdrant_filter(search_filter), exact=True
        )
        return int(counted.count)

    def count_if_cheap(self, search_filter: SearchFilter | None, limit: int) -> int | None:
        """A server's estimate is approximate even without a filter, so only small counts."""
        estimate = self._client.count(
            self.name, count_filter=_qdrant_filter(search_filter), exact=False
        )
        return self.count(search_filter) if int(estimate.count) <= limit else None

    def iter_ids(self) -> Iterator[str]:
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.name, limit=_SCROLL_PAGE, offset=offset, with_payload=False
            )
            yield from (str(r.id) for r in records)
            if offset is None:
                return

    def build_due(self) -> int:
        return 0

    def optimize(self) -> None:
        """A Qdrant server builds HNSW in the background; local mode has none to build."""


def _sparse(payload: Payload) -> models.SparseVector:
    indices, values = sparse_of(payload_words(payload))
    return models.SparseVector(indices=indices, values=values)


def _qdrant_filter(search_filter: SearchFilter | None) -> models.Filter | None:
    found = conditions(search_filter)
    return models.Filter(must=[_qdrant_condition(c) for c in found]) if found else None


def _qdrant_condition(condition: Condition) -> models.FieldCondition:
    if isinstance(condition, Match):
        values = list(condition.values)
        match: Any = (
            models.MatchValue(value=values[0]) if len(values) == 1 else models.MatchAny(any=values)
        )
        return models.FieldCondition(key=condition.key, match=match)
    if isinstance(condition, Between):
        return models.FieldCondition(
            key=condition.key, range=models.Range(gte=condition.low, lte=condition.high)
        )
    after, before = condition.after, condition.before
    return models.FieldCondition(
        key=condition.key,
        range=models.DatetimeRange(
            gte=as_utc(after) if after else None, lt=as_utc(before) if before else None
        ),
    )
