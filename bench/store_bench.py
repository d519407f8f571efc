"""The embedded store at scale: upsert rate, reopen time, search latency.

    .venv/bin/python -m bench.store_bench [--points 100000] [--local-points 5000]

Qdrant Edge (the embedded default) with 512-d synthetic points and clipdex's real payload
shape, then qdrant-client local mode on a smaller set for comparison (it is pure-Python brute
force; at 100k points it takes minutes to load).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from core.store.base import PointRecord, SearchFilter, VectorIndex
from core.store.edge import EdgeStore
from core.store.qdrant import QdrantStore

DIM = 512
FOLDERS = [f"/photos/{year}" for year in range(2000, 2025)]


def synthetic(count: int, seed: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = []
    for i in range(count):
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
        points.append(PointRecord(str(uuid.UUID(int=i + 1)), vectors[i], payload))
    return points


def p50_ms(run: Callable[[], object], repeats: int = 50) -> float:
    run()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def searches(index: VectorIndex, label: str) -> None:
    query = np.random.default_rng(42).standard_normal(DIM).astype(np.float32)
    query /= np.linalg.norm(query)
    narrow = SearchFilter(folder="/photos/2017", min_width=2000)
    plain = p50_ms(lambda: index.search(query, 10))
    filtered = p50_ms(lambda: index.search(query, 10, search_filter=narrow))
    print(f"  {label}: search p50 {plain:.2f} ms, filtered p50 {filtered:.2f} ms")


def upsert_all(index: VectorIndex, points: list[PointRecord], batch: int = 256) -> float:
    started = time.perf_counter()
    for i in range(0, len(points), batch):
        index.upsert(points[i : i + batch])
    return time.perf_counter() - started


def bench_edge(points: list[PointRecord], root: Path) -> None:
    print(f"\nQdrant Edge (embedded default), {len(points)} points x {DIM}-d")
    store = EdgeStore(root)
    index = store.open_index("bench", DIM)
    seconds = upsert_all(index, points)
    print(f"  upsert: {len(points) / seconds:,.0f} points/s ({seconds:.1f} s, batches of 256)")
    searches(index, "before optimize")
    store.close()
    started = time.perf_counter()
    store = EdgeStore(root)
    index = store.open_index("bench", DIM)
    count = index.count()
    print(f"  reopen + count: {time.perf_counter() - started:.2f} s ({count} points)")
    started = time.perf_counter()
    index.optimize()
    print(f"  optimize (HNSW build): {time.perf_counter() - started:.1f} s")
    searches(index, "after optimize ")
    store.close()
    started = time.perf_counter()
    store = EdgeStore(root)
    store.open_index("bench", DIM).count()
    print(f"  reopen after optimize: {time.perf_counter() - started:.2f} s")
    store.close()


def bench_local(points: list[PointRecord], root: Path) -> None:
    print(f"\nqdrant-client local mode on disk, {len(points)} points x {DIM}-d")
    store = QdrantStore(QdrantClient(path=str(root)), kind="local")
    index = store.open_index("bench", DIM)
    seconds = upsert_all(index, points)
    print(f"  upsert: {len(points) / seconds:,.0f} points/s ({seconds:.1f} s)")
    searches(index, "exact (brute force)")
    store.close()
    started = time.perf_counter()
    store = QdrantStore(QdrantClient(path=str(root)), kind="local")
    store.open_index("bench", DIM).count()
    print(f"  reopen + count: {time.perf_counter() - started:.2f} s")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--local-points", type=int, default=5_000)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="clipdex-store-bench-"))
    try:
        points = synthetic(args.points)
        bench_edge(points, scratch / "edge")
        bench_local(points[: args.local_points], scratch / "local")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
