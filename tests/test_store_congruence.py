"""Every backend answers the same points and queries with the same exact top-k."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from core.store.base import (
    PointRecord,
    SearchFilter,
    StoreError,
    StoreLocked,
    VectorIndex,
    VectorStore,
)
from core.store.edge import EdgeStore
from core.store.qdrant import QdrantStore

pytestmark = pytest.mark.unit

DIM = 16
FOLDERS = ["/lib/a", "/lib/b", "/lib/b/c"]
FORMATS = ["JPEG", "PNG", "WEBP"]
CAMERAS = [("Canon", "EOS 5D"), ("NIKON CORPORATION", "D750"), None]
ORIENTATIONS = ["landscape", "portrait", "square"]


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
            "bytes": 1000 + (i * 37) % 5000,
            "orientation": ORIENTATIONS[i % 3],
            "name": f"photo_{i}.jpg",
            "meta": {"album": f"trip{i % 5}", "tags": ["beach"] if i % 7 == 0 else ["city"]},
        }
        camera = CAMERAS[i % 3]
        if camera:
            payload["camera_make"], payload["camera_model"] = camera
        if i % 4:
            payload["taken_at"] = f"20{10 + i % 12:02d}-06-01T12:00:00Z"
        points.append(
            PointRecord(str(uuid.UUID(int=i + 1)), vector / np.linalg.norm(vector), payload)
        )
    return points


@pytest.fixture
def indexes(tmp_path: Path) -> Iterator[dict[str, VectorIndex]]:
    stores: dict[str, VectorStore] = {
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
    SearchFilter(max_width=200, max_height=300),
    SearchFilter(orientation="portrait"),
    SearchFilter(min_bytes=2000, max_bytes=4000),
    SearchFilter(camera_make="Canon"),
    SearchFilter(camera_model="D750", min_width=150),
    SearchFilter(metadata=(("album", "trip3"),)),
    SearchFilter(metadata=(("album", "trip1"), ("tags", "beach"))),
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


KEYWORD_QUERIES = [
    (["photo", "42"], None),  # a file name: its own number is the rarest word
    (["beach"], None),  # a tag
    (["nikon"], SearchFilter(folder="/lib/a")),  # EXIF make, filtered
    (["eos", "5d", "trip2"], SearchFilter(orientation="landscape")),
    (["nothing", "here"], None),
]


@pytest.mark.parametrize(("words", "search_filter"), KEYWORD_QUERIES)
def test_same_keyword_ranking_everywhere(
    indexes: dict[str, VectorIndex], words: list[str], search_filter: SearchFilter | None
) -> None:
    answers = {
        name: [(h.id, round(h.score, 4)) for h in index.keyword_search(words, 400, search_filter)]
        for name, index in indexes.items()
    }
    assert answers["edge"] == answers["memory"] == answers["local-path"]
    expected = {
        p.id
        for p in make_points()
        if set(words) & _words(p.payload) and _passes(p.payload, search_filter)
    }
    assert {hit_id for hit_id, _ in answers["edge"]} == expected


def _words(payload: dict[str, object]) -> set[str]:
    from core.store.keywords import payload_words

    return payload_words(payload)


def _passes(payload: dict[str, object], search_filter: SearchFilter | None) -> bool:
    if search_filter is None:
        return True
    folder_ok = search_filter.folder is None or search_filter.folder in payload["folders"]  # type: ignore[operator]
    shape_ok = search_filter.orientation in (None, payload["orientation"])
    return folder_ok and shape_ok


def test_a_file_name_is_found_first_by_keyword(indexes: dict[str, VectorIndex]) -> None:
    wanted = str(uuid.UUID(int=43))  # photo_42.jpg
    for index in indexes.values():
        assert index.keyword_search(["photo", "42"], 5)[0].id == wanted


def test_counts_agree_with_filters(indexes: dict[str, VectorIndex]) -> None:
    for search_filter in FILTERS:
        counts = {name: index.count(search_filter) for name, index in indexes.items()}
        assert len(set(counts.values())) == 1, counts


def test_cheap_counts_are_exact_or_absent(indexes: dict[str, VectorIndex]) -> None:
    """A page's total: the exact count when the filter's estimate is within the limit (or the
    backend keeps the number), never an estimate passed off as a count."""
    one_folder = SearchFilter(folder="/lib/a")  # 100 of the 300 points
    for name, index in indexes.items():
        assert index.count_if_cheap(None, 1000) == 300, name
        assert index.count_if_cheap(one_folder, 1000) == index.count(one_folder) == 100, name
        assert index.count_if_cheap(SearchFilter(formats=("GIF",)), 10) == 0, name
        assert index.count_if_cheap(one_folder, 10) is None, name
        # Qdrant Edge keeps its point count exactly; a server's is an estimate, so not past 10.
        assert index.count_if_cheap(None, 10) == (300 if name == "edge" else None), name


def test_keywords_follow_a_payload_rewrite(indexes: dict[str, VectorIndex]) -> None:
    moved = str(uuid.UUID(int=2))
    for index in indexes.values():
        assert not index.keyword_search(["holidays"], 5)
        index.set_payloads({moved: {"path": "/lib/holidays/x.jpg", "meta": {"tag": "sunny"}}})
        assert [h.id for h in index.keyword_search(["holidays"], 5)] == [moved]
        assert [h.id for h in index.keyword_search(["sunny"], 5)] == [moved]
        hits = index.search(make_points()[1].vector, 1, with_vectors=True)
        assert hits[0].vector is not None and hits[0].vector.shape == (DIM,)


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


def test_a_collection_name_that_leaves_the_store_is_refused(tmp_path: Path) -> None:
    """Names come from the catalog: a tampered or mis-restored one must not create, or
    delete, a folder outside the store."""
    outside = tmp_path / "precious"
    outside.mkdir()
    store = EdgeStore(tmp_path / "store")
    try:
        for name in ("../precious", "../../elsewhere", "..", "a/b", ""):
            with pytest.raises(StoreError, match="not a plain folder name"):
                store.open_index(name, 4)
            with pytest.raises(StoreError, match="not a plain folder name"):
                store.drop_index(name)
    finally:
        store.close()
    assert outside.is_dir() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("kind", ["edge", "local-path"])
def test_a_collection_opened_with_another_dimension_is_refused(tmp_path: Path, kind: str) -> None:
    """The catalog's ``dim`` is what every query vector is checked against; a catalog that
    disagrees with the collection (a mismatched restore) is refused at open, not mid-query."""

    def store() -> VectorStore:
        if kind == "edge":
            return EdgeStore(tmp_path / "edge")
        return QdrantStore(QdrantClient(path=str(tmp_path / "local")), kind="local")

    first = store()
    first.open_index("sized", DIM).upsert(make_points(3))
    first.close()
    again = store()
    try:
        with pytest.raises(StoreError, match=f"holds {DIM}-d vectors, not {DIM * 2}-d"):
            again.open_index("sized", DIM * 2)
        assert again.open_index("sized", DIM).count() == 3
    finally:
        again.close()
