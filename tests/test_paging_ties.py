"""Pages join up exactly when scores tie: the same picture saved as several files has one
vector, and every file sharing a word scores the same by keyword. A hostile run found pages
repeating some hits and skipping others (a store keeps an arbitrary part of a tie group at
the edge of its top k), and collapsed pages that were short, or empty while claiming more."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from core.store.base import PointRecord, VectorIndex, VectorStore
from core.store.edge import EdgeStore
from core.store.qdrant import QdrantStore
from search.query import SearchOptions
from search.ranking import ranked_page

pytestmark = pytest.mark.unit

DIM = 16
PICTURES = 6  # distinct vectors
COPIES = 9  # files per picture: each group of nine ties exactly
POINTS = PICTURES * COPIES


def _points() -> list[PointRecord]:
    rng = np.random.default_rng(11)
    pictures = rng.standard_normal((PICTURES, DIM)).astype(np.float32)
    pictures /= np.linalg.norm(pictures, axis=1, keepdims=True)
    points = []
    for i in range(POINTS):
        name = f"hopper_{i}.{['jpg', 'png', 'bmp'][i % 3]}"
        payload = {"path": f"/lib/{name}", "folders": ["/", "/lib"], "name": name}
        # ids out of insertion order, so the backend's own order is not the id order
        point_id = str(uuid.UUID(int=(i * 7919) % 10007 + 1))
        points.append(PointRecord(point_id, pictures[i % PICTURES], payload))
    return points


@pytest.fixture
def indexes(tmp_path: Path) -> Iterator[dict[str, VectorIndex]]:
    stores: dict[str, VectorStore] = {
        "edge": EdgeStore(tmp_path / "edge"),
        "local": QdrantStore(QdrantClient(path=str(tmp_path / "local")), kind="local"),
    }
    opened = {}
    for name, store in stores.items():
        index = store.open_index("ties", DIM)
        index.upsert(_points())
        opened[name] = index
    yield opened
    for store in stores.values():
        store.close()


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _query() -> np.ndarray:
    return _points()[0].vector + 0.5 * _points()[1].vector


@pytest.mark.parametrize("limit", [1, 4, 7, 10])
def test_store_pages_of_tied_scores_join_up(indexes: dict[str, VectorIndex], limit: int) -> None:
    for name, index in indexes.items():
        whole = [hit.id for hit in index.search(_query(), POINTS)]
        paged = []
        for offset in range(0, POINTS, limit):
            paged += [
                (hit.id, round(hit.score, 5)) for hit in index.search(_query(), limit, offset)
            ]
        assert [hit_id for hit_id, _ in paged] == whole, name
        assert len(set(paged)) == POINTS, name
        picture_of = {point.id: i % PICTURES for i, point in enumerate(_points())}
        exact = [
            round(float(_unit(_query()) @ _points()[picture_of[i]].vector), 5) for i, _ in paged
        ]
        assert [score for _, score in paged] == pytest.approx(exact, abs=1e-4), name
        deep = index.search(_query(), limit, 5, with_vectors=True)
        assert all(hit.vector is not None and hit.vector.shape == (DIM,) for hit in deep), name
        hits = index.search(_query(), limit, 3)
        assert all(hit.payload["path"].startswith("/lib/") for hit in hits), name


def _pages(index: VectorIndex, options: SearchOptions, words: list[str]) -> list[list[str]]:
    vector = None if options.mode == "keyword" else _query()
    pages, offset = [], 0
    while True:
        page = ranked_page(index, vector, words, replace(options, offset=offset))
        pages.append([hit.id for hit in page.hits])
        if not page.has_more:
            return pages
        assert page.hits, f"an empty page at offset {offset} claims more"
        offset += options.limit


@pytest.mark.parametrize("limit", [3, 7])
def test_keyword_pages_of_one_shared_word_join_up(
    indexes: dict[str, VectorIndex], limit: int
) -> None:
    for name, index in indexes.items():
        options = SearchOptions(limit=limit, mode="keyword")
        paged = [hit for page in _pages(index, options, ["hopper"]) for hit in page]
        whole = ranked_page(index, None, ["hopper"], SearchOptions(limit=100, mode="keyword"))
        assert paged == [hit.id for hit in whole.hits], name
        assert len(set(paged)) == POINTS, name


def test_collapsed_pages_are_full_and_agree_with_one_big_page(
    indexes: dict[str, VectorIndex],
) -> None:
    """Nine copies of each picture collapse to one hit each: six hits in all. Pages of two
    must be full until the sixth, and end there, whatever the page size."""
    for name, index in indexes.items():
        big = ranked_page(index, _query(), [], SearchOptions(limit=50, collapse_duplicates=0.99))
        assert len(big.hits) == PICTURES and not big.has_more, name
        options = SearchOptions(limit=2, collapse_duplicates=0.99)
        pages = _pages(index, options, [])
        assert [len(page) for page in pages] == [2, 2, 2], name
        assert [hit for page in pages for hit in page] == [hit.id for hit in big.hits], name


def test_hybrid_gives_equal_keyword_scores_one_rank() -> None:
    """Files sharing only a common word tie by keyword; fusion must not favour the lowest ids
    among them (it ranked them 2, 3, 4... by id before)."""
    from core.store.base import StoredHit
    from search.fusion import fuse

    named = StoredHit("t", 5.0, {})
    common = [StoredHit(name, 1.0, {}) for name in ("a", "b", "c")]
    fused = {hit.id: hit.score for hit in fuse([], [named, *common], keyword_weight=0.5)}
    assert fused["a"] == fused["b"] == fused["c"] < fused["t"]
