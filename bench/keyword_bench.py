"""Search latency by mode on the embedded store: vector, keyword, hybrid, and a filtered,
date-sorted hybrid, side by side in one run (same points, same queries).

    .venv/bin/python -m bench.keyword_bench [--points 20000] [--queries 100]

Synthetic 512-d points with clipdex's payload shape (names, folders, cameras, metadata tags).
The keyword side is Qdrant's own sparse search (IDF); hybrid is two store calls plus fusion.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.store.base import PointRecord, SearchFilter, VectorIndex
from core.store.edge import EdgeStore
from core.store.keywords import words
from search.query import SearchOptions
from search.ranking import ranked_page

DIM = 512
WORDS = ["beach", "harbour", "kayak", "dune", "market", "forest", "snow", "bridge", "cat", "dog"]
CAMERAS = ["Canon", "NIKON CORPORATION", "SONY", "Apple", "FUJIFILM"]


def points(count: int) -> list[PointRecord]:
    rng = np.random.default_rng(3)
    made = []
    for i in range(count):
        vector = rng.standard_normal(DIM).astype(np.float32)
        folder = f"/photos/{2000 + i % 25}/{WORDS[i % 10]}"
        payload = {
            "path": f"{folder}/IMG_{i:06d}.jpg", "paths": [f"{folder}/IMG_{i:06d}.jpg"],
            "folders": ["/", "/photos", folder], "name": f"IMG_{i:06d}.jpg", "format": "JPEG",
            "width": 4000, "height": 3000, "orientation": "landscape", "bytes": 2_000_000 + i,
            "camera_make": CAMERAS[i % 5], "taken_at": f"20{i % 25:02d}-06-01T12:00:00Z",
            "meta": {"tags": [WORDS[(i * 7) % 10], WORDS[(i * 3) % 10]]},
        }  # fmt: skip
        made.append(
            PointRecord(str(uuid.UUID(int=i + 1)), vector / np.linalg.norm(vector), payload)
        )
    return made


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def run(index: VectorIndex, queries: int) -> None:
    vector = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
    vector /= np.linalg.norm(vector)
    asked = words("kayak harbour IMG_000042")
    cases: dict[str, tuple[np.ndarray | None, list[str], SearchOptions]] = {
        "vector": (vector, [], SearchOptions(limit=20)),
        "keyword": (None, asked, SearchOptions(limit=20, mode="keyword")),
        "hybrid": (vector, asked, SearchOptions(limit=20, mode="hybrid")),
        "hybrid+filter+sort": (
            vector,
            asked,
            SearchOptions(
                limit=20,
                mode="hybrid",
                sort="-taken_at",
                filters=SearchFilter(camera_make="Canon", metadata=(("tags", "dune"),)),
            ),
        ),
    }
    base = None
    print(f"{'mode':<20} {'p50 ms':>8} {'p95 ms':>8} {'x vector':>9}")
    for name, case in cases.items():
        p50, p95 = timed(lambda case=case: ranked_page(index, *case), queries)  # type: ignore[misc]
        base = base or p50
        print(f"{name:<20} {p50:8.2f} {p95:8.2f} {p50 / base:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        store = EdgeStore(Path(root) / "edge")
        index = store.open_index("bench", DIM)
        started = time.perf_counter()
        made = points(args.points)
        for start in range(0, len(made), 1000):
            index.upsert(made[start : start + 1000])
        index.optimize()
        print(
            f"{args.points} points written and optimized in {time.perf_counter() - started:.1f} s"
        )
        run(index, args.queries)
        store.close()


if __name__ == "__main__":
    main()
