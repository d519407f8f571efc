"""Every backend answers the same points and queries with the same exact top-k."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from core.store.base import PointRecord, SearchFilter, StoreLocked, VectorIndex
from core.store.edge import EdgeStore
from core.store.qdrant import QdrantStore

pytestmark = pytest.mark.unit

DIM = 16
FOLDERS = ["/lib/a", "/lib/b", "/lib/b/c"]
FORMATS = ["JPEG", "PNG", "WEBP"]


def make_points(count: int = 300) -> list[PointRecord]:
    rng = np.random.default_rng(7)
    points = []
    for i in range(count):
        vector = rng.standard_normal(DIM).astype(np.float32)
        folder = FOLDERS[i % 3]
        payload = {
            "path": f"{folder}/{i}.jpg",
            "folders": ["/", "/lib", *(["/lib/b"] if folder == "/lib/b/c" else []), folder],
            "format": FORMATS[i % 3],
            "width": 100 + i,
            "height": 50 + (i * 7) % 400,
        }
        if i % 4:
            payload["taken_at"] = f"20{10 + i % 12:02d}-06-01T12:00:00Z"
        points.append(
            PointRecord(str(uuid.UUID(int=i + 1)), vector / np.linalg.norm(vector), payload)
        )
    return points


@pytest.fixture
def indexes(tmp_path: Path) -> Iterator[dict[str, VectorIndex]]:
    stores = {
        "edge": EdgeStore(tmp_path / "edge"),
        "memory": QdrantStore(QdrantClient(location=":memory:"), kind="memory"),
        "local-path": QdrantStore(QdrantClient(path=str(tmp_path / "local")), kind="local"),
    }
    opened: dict[str, VectorIndex] = {}
    for name, store in stores.items():
        index = store.open_index("congruence", DIM)
        index.upsert(make_points())
        opened[name] = index
    yield opened
    for store in stores.values():
        store.close()


FILTERS = [
    None,
    SearchFilter(folder="/lib/b"),
    SearchFilter(formats=("PNG", "WEBP")),
    SearchFilter(min_width=250, min_height=200),
    SearchFilter(taken_after=datetime(2014, 1, 1), taken_before=datetime(2019, 1, 1)),
    SearchFilter(folder="/lib/b/c", formats=("WEBP",), min_width=150),
]


@pytest.mark.parametrize("search_filter", FILTERS)
def test_same_exact_top_k_everywhere(
    indexes: dict[str, VectorIndex], search_filter: SearchFilter | None
) -> None:
    rng = np.random.default_rng(99)
    for _ in range(5):
        query = rng.standard_normal(DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        answers = {
            name: [
                (h.id, round(h.score, 5))
                for h in index.search(query, 10, 0, search_filter, exact=True)
            ]
            for name, index in indexes.items()
        }
        assert answers["edge"], "a filter that matches nothing proves nothing"
        assert answers["edge"] == answers["memory"] == answers["local-path"]


def test_paging_scores_and_counts_agree(indexes: dict[str, VectorIndex]) -> None:
    points = make_points()
    query = points[0].vector
    brute = sorted(points, key=lambda p: -float(p.vector @ query))
    for index in indexes.values():
        page1 = index.search(query, 5, 0, exact=True)
        page2 = index.search(query, 5, 5, exact=True)
        assert [h.id for h in page1 + page2] == [p.id for p in brute[:10]]
        assert abs(page1[0].score - 1.0) < 1e-5  # cosine of a point with itself
        assert index.count() == 300


def test_delete_payload_rewrite_and_lookup(indexes: dict[str, VectorIndex]) -> None:
    points = make_points()
    gone, kept = points[0].id, points[1].id
    for index in indexes.values():
        index.delete([gone])
        index.set_payloads({kept: {"path": "/moved/1.jpg", "folders": ["/", "/moved"]}})
        assert index.existing_ids([gone, kept]) == {kept}
        assert index.count() == 299
        assert len(list(index.iter_ids())) == 299
        hits = index.search(points[1].vector, 1, search_filter=SearchFilter(folder="/moved"))
        assert [(h.id, h.payload["path"]) for h in hits] == [(kept, "/moved/1.jpg")]


def test_vectors_of_the_wrong_size_are_refused(indexes: dict[str, VectorIndex]) -> None:
    with pytest.raises(Exception, match="16-d"):
        indexes["edge"].upsert([PointRecord("x", np.zeros(3, np.float32), {})])


def test_second_process_on_the_embedded_store_is_refused_clearly(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path / "store")
    try:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            message = pool.apply(_open_in_child, (str(tmp_path / "store"),))
    finally:
        first.close()
    assert "in use by process" in message and "CLIPDEX_QDRANT_URL" in message


def _open_in_child(path: str) -> str:
    try:
        EdgeStore(Path(path))
    except StoreLocked as error:
        return str(error)
    return "opened"
