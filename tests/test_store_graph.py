"""The embedded store's search graph (HNSW over int8 codes, rescored): built when due, and
searches through it stay right: recall against exact search, exact scores, full pages under
selective filters, new points found before the next build, and the graph kept on reopen."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from core.store.base import PointRecord, SearchFilter, StoreError
from core.store.edge import EdgeIndex, EdgeStore
from core.store.edge_tuning import EdgeTuning
from tests.synthetic_vectors import clip_like

pytestmark = pytest.mark.unit

POINTS = 5000
YEARS = 25
TUNING = EdgeTuning(indexing_threshold=1000, full_scan_vectors=1000)


def _id(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def _records(vectors: NDArray[np.float32], first: int = 0) -> list[PointRecord]:
    records = []
    for offset, vector in enumerate(vectors):
        i = first + offset
        folder = f"/photos/{2000 + i % YEARS}"
        payload = {
            "path": f"{folder}/{i}.jpg", "paths": [f"{folder}/{i}.jpg"], "folder": folder,
            "folders": ["/", "/photos", folder], "format": "JPEG",
            "width": 640 + i % 4000, "height": 480,
        }  # fmt: skip
        records.append(PointRecord(_id(i), vector, payload))
    return records


@pytest.fixture(scope="module")
def vectors() -> NDArray[np.float32]:
    return clip_like(POINTS)


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, vectors: NDArray[np.float32]
) -> Iterator[tuple[EdgeStore, EdgeIndex, Path]]:
    root = tmp_path_factory.mktemp("graph")
    store = EdgeStore(root, tuning=TUNING)
    index = store.open_index("graph", vectors.shape[1])
    records = _records(vectors)
    for start in range(0, POINTS, 500):
        index.upsert(records[start : start + 500])
    assert index.build_due() == POINTS  # one plain segment, past the threshold
    index.optimize()
    yield store, index, root
    store.close()


def _queries() -> NDArray[np.float32]:
    return clip_like(30, seed=99)


def test_the_graph_is_built_when_due_and_nothing_is_left(
    built: tuple[EdgeStore, EdgeIndex, Path],
) -> None:
    _, index, _ = built
    assert index.build_due() == 0
    assert index.count() == POINTS


def test_recall_against_exact_search_and_scores_are_exact(
    built: tuple[EdgeStore, EdgeIndex, Path], vectors: NDArray[np.float32]
) -> None:
    _, index, _ = built
    found = []
    for query in _queries():
        approximate = index.search(query, 10)
        exact = index.search(query, 10, exact=True)
        found.append(len({h.id for h in approximate} & {h.id for h in exact}) / 10)
        for hit in approximate:  # rescored with the float vectors: the true cosine
            position = uuid.UUID(hit.id).int - 1
            assert hit.score == pytest.approx(float(vectors[position] @ query), abs=1e-4)
    assert np.mean(found) >= 0.98


def test_every_stored_vector_finds_itself_first(
    built: tuple[EdgeStore, EdgeIndex, Path], vectors: NDArray[np.float32]
) -> None:
    """What `similar` relies on: the int8 walk, then rescoring, still puts the point first."""
    _, index, _ = built
    for position in range(0, POINTS, 50):
        hit = index.search(vectors[position], 1)[0]
        assert hit.id == _id(position)
        assert hit.score == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "search_filter",
    [
        SearchFilter(folder="/photos/2007"),  # 4%: answered from the payload index, exactly
        SearchFilter(folder="/photos/2007", min_width=2000),  # 2.7%
        SearchFilter(min_width=3300),  # 27%, past the exact path: a filtered graph walk
        SearchFilter(min_width=2500),  # 43%
    ],
    ids=["folder", "folder-and-width", "graph-walk", "wide"],
)
def test_a_filtered_search_fills_its_page(
    built: tuple[EdgeStore, EdgeIndex, Path], search_filter: SearchFilter
) -> None:
    _, index, _ = built
    matching = index.count(search_filter)
    assert matching > 10
    found = []
    for query in _queries():
        hits = index.search(query, 10, search_filter=search_filter)
        exact = index.search(query, 10, search_filter=search_filter, exact=True)
        assert len(hits) == 10  # without ACORN, the graph walk returned a single hit here
        found.append(len({h.id for h in hits} & {h.id for h in exact}) / 10)
    assert np.mean(found) >= 0.95


def _built_selective(root: Path, tuning: EdgeTuning, name: str) -> tuple[EdgeStore, EdgeIndex]:
    """20,000 points (``width`` = 640 + i % 4000), written in chunks and built."""
    points = 20_000
    vectors = clip_like(points, seed=3)
    store = EdgeStore(root, tuning=tuning)
    index = store.open_index(name, vectors.shape[1])
    for start in range(0, points, 2000):
        index.upsert(_records(vectors[start : start + 2000], first=start))
    index.optimize()
    return store, index


def test_a_short_filtered_walk_is_answered_again_by_a_scan(tmp_path: Path) -> None:
    """The filtered graph walk (ACORN) fails when few points match: at 1M points a filter
    matching 2% of them got 5 of 10 hits; on these 20,000 points one matching 0.5% gets 1 or
    2. Such filters are scanned (fewer matches than ``full_scan_vectors``, 100,000 by default,
    or an eighth of the segment); here both thresholds are set low to force the walk, and a
    page that comes back short while more points match must be answered again by a scan."""
    walks = EdgeTuning(indexing_threshold=1000, full_scan_vectors=10, scan_share=0.0)
    store, index = _built_selective(tmp_path, walks, "selective")
    try:
        selective = SearchFilter(min_width=640, max_width=659)  # i % 4000 < 20: 100 points
        assert index.count(selective) == 100
        for query in _queries():
            hits = index.search(query, 10, search_filter=selective)
            assert len(hits) == 10
            assert all(640 <= int(h.payload["width"]) <= 659 for h in hits)
            last = index.search(query, 10, offset=95, search_filter=selective)
            assert len(last) == 5  # the last page: 100 match, so 5 past offset 95
    finally:
        store.close()


@pytest.mark.parametrize("built_before", [False, True], ids=["built-now", "built-before"])
def test_a_built_segment_scans_filters_matching_up_to_an_eighth_of_it(
    tmp_path: Path, built_before: bool
) -> None:
    """ACORN's recall falls with the share of a segment a filter matches: on these 20,000
    points, walks under filters matching 1% of them found 0.56-0.90 of the true top 10, and
    0.83 at 2% (at 1M points, 10%: 0.970-0.984). So a built segment scans the matches of any
    filter matching up to an eighth of it, even where the collection's own threshold (10 here)
    would walk: from its build on, or, for a segment built before this rule, from its next
    open."""
    tuning = EdgeTuning(indexing_threshold=1000, full_scan_vectors=10)
    builder = replace(tuning, scan_share=0.0) if built_before else tuning
    store, index = _built_selective(tmp_path, builder, "shares")
    try:
        for reopen in (False, True) if not built_before else (True,):
            if reopen:
                store.close()
                store = EdgeStore(tmp_path, tuning=tuning)
                index = store.open_index("shares", index.dim)
            for width in (40, 80):  # i % 4000 < width: 200 and 400 points, 1% and 2%
                selective = SearchFilter(min_width=640, max_width=640 + width - 1)
                found = []
                for query in _queries():
                    hits = index.search(query, 10, search_filter=selective)
                    exact = index.search(query, 10, search_filter=selective, exact=True)
                    found.append(len({h.id for h in hits} & {h.id for h in exact}) / 10)
                assert np.mean(found) >= 0.99, (reopen, width, np.mean(found))
    finally:
        store.close()


def _built_with_raised_thresholds(root: Path) -> tuple[EdgeStore, EdgeIndex]:
    """5,000 points, unbuilt, under a collection threshold of 10: their build raises the
    segment's to 625 and reopens the shard."""
    vectors = clip_like(POINTS, seed=8)
    store = EdgeStore(root, tuning=EdgeTuning(indexing_threshold=1000, full_scan_vectors=10))
    index = store.open_index("reloaded", vectors.shape[1])
    index.upsert(_records(vectors))
    return store, index


def test_the_index_reopened_by_a_build_keeps_working(tmp_path: Path) -> None:
    store, index = _built_with_raised_thresholds(tmp_path)
    try:
        index.optimize()
        fresh = clip_like(200, seed=9)
        index.upsert(_records(fresh, first=POINTS))
        assert index.count() == POINTS + 200
        assert index.search(fresh[0], 1)[0].id == _id(POINTS)
        assert [h.id for h in index.keyword_search([f"{POINTS + 7}"], 1)] == [_id(POINTS + 7)]
        index.optimize()  # nothing due, nothing raised: no reopen
        store.close()
        store = EdgeStore(tmp_path)
        assert store.open_index("reloaded", fresh.shape[1]).count() == POINTS + 200
    finally:
        store.close()


def test_a_reopen_that_fails_after_a_build_says_so_in_one_line_and_frees_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, index = _built_with_raised_thresholds(tmp_path)

    def disk_gone(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("core.store.edge.read_for_open", disk_gone)
    with pytest.raises(StoreError, match=r"search graph of 'reloaded' failed: .*Input/output"):
        index.optimize()
    store.close()  # the shard is already closed: nothing left to fail
    monkeypatch.undo()
    again = EdgeStore(tmp_path)  # the lock was released
    try:
        assert again.open_index("reloaded", index.dim).count() == POINTS
    finally:
        again.close()


def test_points_written_after_the_build_are_found_before_the_next_one(
    built: tuple[EdgeStore, EdgeIndex, Path],
) -> None:
    _, index, _ = built
    fresh = clip_like(200, seed=7)
    index.upsert(_records(fresh, first=POINTS))
    assert index.build_due() == 0  # 200 is below the threshold: they stay a plain segment
    for offset in (0, 99, 199):
        hits = index.search(fresh[offset], 1)
        assert hits[0].id == _id(POINTS + offset)
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    index.delete([_id(POINTS + i) for i in range(200)])


def test_pages_continue_each_other(tmp_path: Path) -> None:
    """Ten pages of ten are the top hundred in order: no hit twice, none skipped. Rescoring only
    (offset + limit) x oversampling int8 candidates let a page repeat one hit and skip another
    on tightly grouped vectors (like bursts of near-identical photos)."""
    vectors = clip_like(4000, dim=64, topics=8)
    store = EdgeStore(tmp_path, tuning=TUNING)
    try:
        index = store.open_index("paging", 64)
        index.upsert(_records(vectors))
        index.optimize()
        for query in clip_like(20, seed=5, dim=64, topics=8):
            top = [h.id for h in index.search(query, 100)]
            pages = [h.id for page in range(10) for h in index.search(query, 10, offset=page * 10)]
            assert pages == top
        deep = index.search(clip_like(1, seed=6, dim=64, topics=8)[0], 10, offset=600)
        assert len(deep) == 10  # past the beam (ef 512) the search is an exact scan
    finally:
        store.close()


def test_reopening_keeps_the_graph(
    built: tuple[EdgeStore, EdgeIndex, Path], vectors: NDArray[np.float32]
) -> None:
    store, index, root = built
    query = _queries()[0]
    before = [h.id for h in index.search(query, 10)]
    store.close()
    again = EdgeStore(root, tuning=TUNING)
    try:
        reopened = again.open_index("graph", vectors.shape[1])
        # The open maps the float vectors without reading them all (at 1M points that read
        # of 2 GB was a second or more of every reopen); a search faults in what it rescores.
        stored = sum(f.stat().st_size for f in root.rglob("matrix.dat"))
        mapped, resident = _mapping("matrix.dat", root)
        assert stored >= vectors.nbytes and mapped >= vectors.nbytes
        assert resident < stored // 4
        assert reopened.build_due() == 0
        assert [h.id for h in reopened.search(query, 10)] == before
    finally:
        again.close()


def _mapping(name: str, root: Path) -> tuple[int, int]:
    """Bytes of this process's mappings of files called ``name`` under ``root``, and how many
    of them are resident in it (Linux's /proc/self/smaps)."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        pytest.skip("needs Linux's /proc/self/smaps")
    sizes = {"Size:": 0, "Rss:": 0}
    inside = False
    for line in smaps.read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = len(fields) == 6 and fields[5].endswith(name) and str(root) in fields[5]
        elif inside and fields[0] in sizes:
            sizes[fields[0]] += int(fields[1]) * 1024
    return sizes["Size:"], sizes["Rss:"]


def test_the_point_count_stays_exact_through_deletes_replacements_builds_and_reopen(
    tmp_path: Path,
) -> None:
    """``count()`` without a filter reads the shard's own point count (an exact count visits
    every id: 53 ms at 1M points). It must equal the points there are, across segments: after
    deletes, after replacing points that sit in a built segment, after a build, on reopen."""
    vectors = clip_like(3000, seed=4)
    store = EdgeStore(tmp_path, tuning=TUNING)

    def listed(index: EdgeIndex) -> int:
        return len(set(index.iter_ids()))

    try:
        index = store.open_index("counted", vectors.shape[1])
        index.upsert(_records(vectors[:2500]))
        index.optimize()  # 2500 in a built segment
        index.delete([_id(i) for i in range(0, 900, 3)] + [_id(99_999)])  # 300, one unknown
        index.upsert(_records(vectors[2500:], first=1000))  # 500 replaced, now in a plain segment
        index.upsert(_records(vectors[:200], first=2500))  # 200 new
        index.delete([_id(2500 + i) for i in range(50)])
        assert index.count() == listed(index) == 2500 - 300 + 150
        index.optimize()
        assert index.count() == listed(index) == 2350
        store.close()
        store = EdgeStore(tmp_path, tuning=TUNING)
        index = store.open_index("counted", vectors.shape[1])
        assert index.count() == listed(index) == 2350
    finally:
        store.close()
