"""Vector store adapter: one small interface over Qdrant Edge (embedded) and qdrant-client."""

from core.store.base import (
    CollectionDamaged,
    PointRecord,
    SearchFilter,
    StoredHit,
    StoreError,
    StoreLocked,
    VectorIndex,
    VectorStore,
)
from core.store.factory import open_store

__all__ = [
    "CollectionDamaged",
    "PointRecord",
    "SearchFilter",
    "StoreError",
    "StoreLocked",
    "StoredHit",
    "VectorIndex",
    "VectorStore",
    "open_store",
]
