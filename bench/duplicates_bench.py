"""Library-wide duplicates: the blockwise scan (``search.duplicates``) against one store search
per point, side by side, on the embedded store (Qdrant Edge) with 512-d synthetic vectors that
hold known duplicate groups.

    .venv/bin/python -m bench.duplicates_bench [--points 2000 5000 10000] [--per-point 2000]

Prints, per size: seconds to read the vectors, seconds to compare them blockwise, groups found
against the planted ones, and for the per-point way (only up to --per-point points, it is slow)
its seconds and the ratio. The blockwise work grows as n^2: multiply the largest figure by
(100000 / n)^2 for a 100k library.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.store_bench import DIM, synthetic
from core.store.base import PointRecord, VectorIndex
from core.store.edge import EdgeStore
from search.duplicates import find_duplicates, read_points, similar_pairs

THRESHOLD = 0.95
GROUP = 4  # every 50th point gets GROUP - 1 near copies


def with_copies(count: int) -> tuple[list[PointRecord], int]:
    """``count`` points of which some are near copies (cosine ~0.99) of an original."""
    points = synthetic(count)
    rng = np.random.default_rng(1)
    planted = 0
    for start in range(0, count - GROUP, 50):
        original = points[start].vector
        for offset in range(1, GROUP):
            noisy = original + rng.standard_normal(DIM).astype(np.float32) * 0.004
            noisy /= np.linalg.norm(noisy)
            copy = points[start + offset]
            points[start + offset] = PointRecord(copy.id, noisy.astype(np.float32), copy.payload)
        planted += 1
    return points, planted


def per_point(index: VectorIndex, limit: int) -> tuple[float, int]:
    """One search per point, keeping neighbours above the threshold: the other way."""
    started = time.perf_counter()
    pairs = 0
    for point in read_points(index, index.iter_ids()):
        assert point.vector is not None
        hits = index.search(point.vector, limit)
        pairs += sum(1 for hit in hits if hit.id != point.id and hit.score >= THRESHOLD)
    return time.perf_counter() - started, pairs // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--per-point", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'points':>8} {'read s':>8} {'compare s':>10} {'groups':>7} {'planted':>8} "
          f"{'per-point s':>12} {'ratio':>7}")  # fmt: skip
    for count in args.points:
        with tempfile.TemporaryDirectory() as folder:
            store = EdgeStore(Path(folder))
            index = store.open_index("bench", DIM)
            points, planted = with_copies(count)
            for start in range(0, count, 256):
                index.upsert(points[start : start + 256])
            started = time.perf_counter()
            vectors = np.stack([np.asarray(p.vector) for p in read_points(index, index.iter_ids())])
            read = time.perf_counter() - started
            started = time.perf_counter()
            sum(1 for _ in similar_pairs(vectors, THRESHOLD))
            compare = time.perf_counter() - started
            groups = len(find_duplicates(index, THRESHOLD, index.iter_ids()).groups)
            slow = "-"
            ratio = "-"
            if count <= args.per_point:
                seconds, _ = per_point(index, GROUP + 1)
                slow, ratio = f"{seconds:.2f}", f"{seconds / (read + compare):.1f}x"
            print(f"{count:>8} {read:>8.2f} {compare:>10.2f} {groups:>7} {planted:>8} "
                  f"{slow:>12} {ratio:>7}")  # fmt: skip
            store.close()


if __name__ == "__main__":
    main()
