"""The embedded store at scale: today's plain scan against the search graph, side by side.

    .venv/bin/python -m bench.store_bench [--sizes 10000,100000,1000000] [--uniform 100000]
    .venv/bin/python -m bench.store_bench --local-points 5000   # also qdrant-client local mode

For each size N, one Qdrant Edge collection with clipdex's own layout (``EdgeStore`` with the
default ``EdgeTuning``) gets N CLIP-shaped 512-d vectors (``tests/synthetic_vectors.py``) with
clipdex's payload shape, then is measured twice in the same run:

  plain   before any build: every search scans every vector (what clipdex did until now)
  graph   after ``optimize()``: HNSW over int8 codes, rescored with the float vectors; built
          with one filter-scan threshold for the whole collection (``--scan-points``), then
          reopened, which raises each built segment's to an eighth of it (at most 125,000)

Each phase prints search p50 unfiltered and filtered (a folder, 4% of the points, and width
ranges matching 1%, 2%, 10%, 12%, 13% and 27%: at 1M points 10% sits on the collection's
scan threshold, 12% and 13% either side of a million-point segment's), recall@10 against exact
search over the same points (after 50 other queries have mapped in the pages a running
process holds), and the reopen time (store closed, reopened, first search answered; then
the p50 of the next 49 searches, whose pages the new process faults in).
After the build it also prints the p50 of a whole result page through the
search layer (the search and its ``total``) beside the exact count that every page paid
before totals were counted only where cheap.
``--uniform N`` adds the worst case: uniform random vectors, which have no neighbourhoods for
any graph to follow.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import qdrant_edge as qe
from numpy.typing import NDArray
from qdrant_client import QdrantClient

from core.store.base import PointRecord, SearchFilter, VectorIndex
from core.store.edge import EdgeIndex, EdgeStore
from core.store.edge_filter import to_edge_filter
from core.store.edge_tuning import EdgeTuning
from core.store.qdrant import QdrantStore
from search.query import SearchOptions
from search.ranking import ranked_page
from tests.synthetic_vectors import DIM, clip_like, uniform

FOLDERS = [f"/photos/{year}" for year in range(2000, 2025)]
QUERIES = 50
# width = 640 + i % 4000: a range of k widths matches k/4000 of the points
FILTERS = {
    "width 1%": SearchFilter(min_width=640, max_width=679),
    "width 2%": SearchFilter(min_width=640, max_width=719),
    "folder 4%": SearchFilter(folder="/photos/2017"),
    "width 10%": SearchFilter(min_width=640, max_width=1039),
    # 120,000 and 130,000 of 1M points: either side of its segment's threshold (125,000)
    "width 12%": SearchFilter(min_width=640, max_width=1119),
    "width 13%": SearchFilter(min_width=640, max_width=1159),
    "width 27%": SearchFilter(min_width=3300),
}
Generate = Callable[[int, int], NDArray[np.float32]]


def records(vectors: NDArray[np.float32], first: int = 0) -> list[PointRecord]:
    points = []
    for offset, vector in enumerate(vectors):
        i = first + offset
        folder = FOLDERS[i % len(FOLDERS)]
        payload = {
            "path": f"{folder}/{i}.jpg",
            "paths": [f"{folder}/{i}.jpg"],
            "folder": folder,
            "folders": ["/", "/photos", folder],
            "format": "JPEG" if i % 5 else "PNG",
            "width": 640 + i % 4000,
            "height": 480 + i % 3000,
            "taken_at": f"{2000 + i % 25}-0{1 + i % 9}-15T10:00:00Z",
        }
        points.append(PointRecord(str(uuid.UUID(int=i + 1)), vector, payload))
    return points


def synthetic(count: int, seed: int = 0) -> list[PointRecord]:
    """``count`` CLIP-shaped points with clipdex's payload shape (other benchmarks use it)."""
    return records(clip_like(count, seed))


def upsert_all(index: VectorIndex, vectors: NDArray[np.float32], batch: int = 1024) -> float:
    started = time.perf_counter()
    for i in range(0, len(vectors), batch):
        index.upsert(records(vectors[i : i + batch], first=i))
    return time.perf_counter() - started


def measure(
    index: VectorIndex,
    queries: NDArray[np.float32],
    exact_top: dict[str, list[set[str]]],
    warm: NDArray[np.float32],
) -> dict[str, tuple[float, float]]:
    """Per filter (and none): p50 ms and mean recall@10 against ``exact_top``, after ``warm``
    (other queries) has mapped in the pages a long-running process has in memory: vectors
    and codes are memory-mapped, and a process's first searches fault their pages in (see
    ``reopen_seconds`` for those)."""
    out = {}
    for label, search_filter in [("no filter", None), *FILTERS.items()]:
        for query in warm:
            index.search(query, 10, search_filter=search_filter)
        latencies, recalls = [], []
        for query, truth in zip(queries, exact_top[label], strict=True):
            started = time.perf_counter()
            hits = index.search(query, 10, search_filter=search_filter)
            latencies.append((time.perf_counter() - started) * 1000)
            recalls.append(len({h.id for h in hits} & truth) / 10)
        out[label] = (statistics.median(latencies), float(np.mean(recalls)))
    return out


def walked_count(index: EdgeIndex, search_filter: SearchFilter | None) -> int:
    """What ``EdgeIndex.count`` did for every page before: an exact count visiting every
    match (unfiltered too, where the shard's own point count is exact)."""
    request = qe.CountRequest(exact=True, filter=to_edge_filter(search_filter))
    return int(index._shard.count(request))


def page_costs(index: EdgeIndex, queries: NDArray[np.float32]) -> dict[str, tuple[float, float]]:
    """Per filter (and none): p50 ms of a whole result page as the search layer makes it (the
    search plus its ``total``), and of the exact count that each page used to pay for."""
    out = {}
    for label, search_filter in [("no filter", None), *FILTERS.items()]:
        options = SearchOptions(limit=10, filters=search_filter or SearchFilter())
        pages, counts = [], []
        for query in queries[:20]:
            started = time.perf_counter()
            ranked_page(index, query, [], options)
            pages.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            walked_count(index, search_filter)
            counts.append((time.perf_counter() - started) * 1000)
        out[label] = (statistics.median(pages), statistics.median(counts))
    return out


def exact_answers(index: VectorIndex, queries: NDArray[np.float32]) -> dict[str, list[set[str]]]:
    return {
        label: [{h.id for h in index.search(q, 10, search_filter=f, exact=True)} for q in queries]
        for label, f in [("no filter", None), *FILTERS.items()]
    }


def reopen_seconds(
    root: Path, queries: NDArray[np.float32], tuning: EdgeTuning
) -> tuple[float, float]:
    """Seconds to reopen the store and answer a first search, and the p50 ms of the next
    unfiltered searches (new queries), whose pages the new process faults in."""
    started = time.perf_counter()
    store = EdgeStore(root, tuning=tuning)
    index = store.open_index("bench", DIM)
    index.search(queries[0], 10)
    seconds = time.perf_counter() - started
    latencies = []
    for query in queries[1:]:
        started = time.perf_counter()
        index.search(query, 10)
        latencies.append((time.perf_counter() - started) * 1000)
    store.close()
    return seconds, statistics.median(latencies)


def bench_size(
    count: int, generate: Generate, label: str, scratch: Path, tuning: EdgeTuning
) -> None:
    vectors = generate(count, 0)
    queries = generate(QUERIES, 99)
    warm = generate(QUERIES, 7)
    root = scratch / f"edge-{label}-{count}"
    store = EdgeStore(root, tuning=tuning)
    index = store.open_index("bench", DIM)
    upsert = upsert_all(index, vectors)
    del vectors
    truth = exact_answers(index, queries)
    plain = measure(index, queries, truth, warm)
    store.close()
    plain_reopen = reopen_seconds(root, queries, tuning)
    # Built as before the per-segment rule: every segment scans below the collection's one
    # threshold. Both graph rows are measured after a reopen (a close drops the pages); the
    # second open raises each built segment's threshold to its share (edge_files).
    one_threshold = replace(tuning, scan_share=0.0)
    store = EdgeStore(root, tuning=one_threshold)
    index = store.open_index("bench", DIM)
    due = index.build_due()
    started = time.perf_counter()
    index.optimize()
    build = time.perf_counter() - started
    store.close()
    store = EdgeStore(root, tuning=one_threshold)
    index = store.open_index("bench", DIM)
    one = measure(index, queries, truth, warm)
    store.close()
    store = EdgeStore(root, tuning=tuning)
    index = store.open_index("bench", DIM)
    graph = measure(index, queries, truth, warm)
    pages = page_costs(index, queries)
    store.close()
    graph_reopen = reopen_seconds(root, queries, tuning)
    shutil.rmtree(root, ignore_errors=True)
    print(f"\n{count:,} {label} points: upsert {count / upsert:,.0f}/s, graph build over "
          f"{due:,} vectors {build:.1f} s")  # fmt: skip
    one_scan = f"{tuning.full_scan_vectors:,}"
    print(f"  p50 ms and recall@10; graph: one scan threshold for the collection ({one_scan}),")
    print("  then raised per built segment (after a reopen)")
    print(f"  {'':10} {'plain':>14} {'graph, one':>14} {'graph, per seg':>14} {'speed-up':>9}")
    for name in plain:
        (p_ms, p_rec), (o_ms, o_rec), (g_ms, g_rec) = plain[name], one[name], graph[name]
        print(
            f"  {name:10} {p_ms:7.2f} {p_rec:6.3f} {o_ms:7.2f} {o_rec:6.3f} "
            f"{g_ms:7.2f} {g_rec:6.3f} {p_ms / g_ms:8.1f}x"
        )
    (plain_s, plain_next), (graph_s, graph_next) = plain_reopen, graph_reopen
    print(f"  reopen + first search: plain {plain_s:.2f} s, graph {graph_s:.2f} s; "
          f"next {QUERIES - 1} searches p50 {plain_next:.2f} / {graph_next:.2f} ms")  # fmt: skip
    print("  a whole page through the search layer (search + total), graph; and the exact count")
    print("  that every page paid before totals were counted only where cheap:")
    for name, (page_ms, count_ms) in pages.items():
        print(f"    {name:10} page {page_ms:7.2f} ms   exact count {count_ms:7.2f} ms")


def bench_local(count: int, scratch: Path) -> None:
    """qdrant-client local mode: pure Python, brute force (why it is not the default)."""
    vectors = clip_like(count)
    store = QdrantStore(QdrantClient(path=str(scratch / "local")), kind="local")
    index = store.open_index("bench", DIM)
    seconds = upsert_all(index, vectors, batch=256)
    query = clip_like(1, seed=99)[0]
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        index.search(query, 10)
        samples.append((time.perf_counter() - started) * 1000)
    print(f"\nqdrant-client local mode, {count:,} points: upsert {count / seconds:,.0f}/s, "
          f"search p50 {statistics.median(samples):.2f} ms")  # fmt: skip
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--uniform", type=int, default=0, help="also N uniform random points")
    parser.add_argument("--local-points", type=int, default=0)
    parser.add_argument(
        "--scan-points", type=int, default=EdgeTuning().full_scan_vectors,
        help="filters matching fewer points of a segment scan them (CLIPDEX_FILTER_SCAN_POINTS)",
    )  # fmt: skip
    args = parser.parse_args()
    tuning = EdgeTuning(full_scan_vectors=args.scan_points)
    print(f"{platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores")  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="clipdex-store-bench-"))
    try:
        for count in (int(size) for size in args.sizes.split(",") if size):
            bench_size(count, lambda n, seed: clip_like(n, seed), "CLIP-shaped", scratch, tuning)
        if args.uniform:
            bench_size(args.uniform, lambda n, seed: uniform(n, seed), "uniform", scratch, tuning)
        if args.local_points:
            bench_local(args.local_points, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
