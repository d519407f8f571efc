"""Choose the store from settings: a server URL, else the embedded on-disk default."""

from __future__ import annotations

import warnings

from core.settings import Settings
from core.settings_checks import qdrant_endpoint
from core.store.base import VectorStore

MEMORY = ":memory:"


def open_store(settings: Settings, location: str | None = None) -> VectorStore:
    """``location=":memory:"`` gives an in-memory qdrant-client store (tests)."""
    if location == MEMORY:
        from qdrant_client import QdrantClient

        from core.store.qdrant import QdrantStore

        return QdrantStore(QdrantClient(location=MEMORY), kind="memory")
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        from core.store.qdrant import QdrantStore

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        # The client's version check runs in a thread of its own and warns, in three lines,
        # when the server cannot be reached; the first request then says so in one line.
        warnings.filterwarnings("ignore", "Failed to obtain server version", UserWarning)
        url = qdrant_endpoint(settings.qdrant_url)  # host:port is http (the settings say so)
        client = QdrantClient(url=url, api_key=api_key, timeout=30)
        return QdrantStore(client, kind="server")
    from core.store.edge import EdgeStore
    from core.store.edge_tuning import EdgeTuning

    tuning = EdgeTuning(
        quantization=settings.store_quantization,
        hnsw_ef=settings.search_ef,
        indexing_threshold=settings.graph_threshold,
        full_scan_vectors=max(settings.filter_scan_points, settings.graph_threshold),
    )
    return EdgeStore(settings.store_path, settings.min_free_bytes, tuning)
