"""Library-wide near duplicates: every pair of points of one index whose cosine similarity is at
least a threshold, grouped into connected components (a re-save, a resize and a light crop of one
photo end in one group).

How it scales: the vectors are read once (a scroll of ids, then ``retrieve`` in chunks), then
compared blockwise with numpy: each block of rows is multiplied by the rows after it, so the work
is n^2/2 dot products of ``dim`` floats (100k ViT-B-32 points: ~2.6e12 multiply-adds, minutes on
a small CPU, seconds on a big one) and the memory is the vectors (n x dim float32, 200 MB at
100k) plus one block of scores, kept under ``BLOCK_SCORES`` floats. A search per point with a
score threshold would make n store round trips instead, each a full scan on an unoptimized
embedded store; ``bench/duplicates.py`` prints both side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.catalog.batching import chunked
from core.store.base import StoredHit, VectorIndex
from search.query import BadQuery

BLOCK_SCORES = 1 << 25  # floats in one block of scores (128 MiB)
READ_CHUNK = 500


class BadThreshold(BadQuery):
    """A similarity threshold outside (0, 1]."""


@dataclass(frozen=True, slots=True)
class DuplicateMember:
    id: str
    path: str
    paths: list[str]
    score: float  # the best cosine similarity to another member of its group

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "path": self.path, "paths": self.paths, "score": self.score}


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    members: list[DuplicateMember]

    def as_dict(self) -> dict[str, object]:
        return {"size": len(self.members), "members": [m.as_dict() for m in self.members]}


@dataclass(frozen=True, slots=True)
class DuplicateReport:
    threshold: float
    compared: int
    groups: list[DuplicateGroup]

    def as_dict(self) -> dict[str, object]:
        return {
            "threshold": self.threshold,
            "compared": self.compared,
            "groups": [group.as_dict() for group in self.groups],
        }


def find_duplicates(index: VectorIndex, threshold: float, ids: Iterable[str]) -> DuplicateReport:
    """Groups of near duplicates among the points ``ids`` of ``index`` (ids with no point are
    left out), largest group first, members by path."""
    if not 0.0 < threshold <= 1.0:
        raise BadThreshold("the threshold is a cosine similarity in (0, 1]", threshold)
    points = list(read_points(index, ids))
    if not points:
        return DuplicateReport(threshold, 0, [])
    vectors = _unit_rows(np.stack([np.asarray(p.vector) for p in points]))
    pairs = similar_pairs(vectors, threshold)
    return DuplicateReport(threshold, len(points), _groups(points, pairs))


def read_points(index: VectorIndex, ids: Iterable[str]) -> Iterator[StoredHit]:
    """The points ``ids`` that exist, with their vectors and payloads, read in chunks."""
    for chunk in chunked(ids, READ_CHUNK):
        yield from (p for p in index.retrieve(chunk, with_vectors=True) if p.vector is not None)


def similar_pairs(
    vectors: NDArray[np.float32], threshold: float
) -> Iterator[tuple[int, int, float]]:
    """(i, j, cosine) for every i < j with cosine >= threshold; rows are unit vectors."""
    count = len(vectors)
    block = max(1, min(count, BLOCK_SCORES // max(count, 1)))
    for start in range(0, count, block):
        rows = vectors[start : start + block]
        scores = rows @ vectors[start:].T  # the columns before ``start`` were compared already
        local_i, local_j = np.nonzero(scores >= threshold)
        for i, j in zip(local_i.tolist(), local_j.tolist(), strict=True):
            if j > i:  # the block's own square: each pair once, never a point with itself
                yield start + i, start + j, float(scores[i, j])


def _groups(
    points: list[StoredHit], pairs: Iterator[tuple[int, int, float]]
) -> list[DuplicateGroup]:
    parent = list(range(len(points)))
    best = [0.0] * len(points)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, score in pairs:
        parent[root(i)] = root(j)
        best[i] = max(best[i], score)
        best[j] = max(best[j], score)
    members: dict[int, list[DuplicateMember]] = {}
    for i, point in enumerate(points):
        if best[i] > 0.0:
            members.setdefault(root(i), []).append(_member(point, best[i]))
    groups = [DuplicateGroup(sorted(group, key=lambda m: m.path)) for group in members.values()]
    return sorted(groups, key=lambda g: (-len(g.members), g.members[0].path))


def _member(point: StoredHit, score: float) -> DuplicateMember:
    paths = [str(path) for path in point.payload.get("paths") or [point.payload.get("path", "")]]
    return DuplicateMember(point.id, paths[0], paths, round(min(score, 1.0), 6))


def _unit_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
