"""Hybrid search: the vector ranking and the keyword ranking fused by weighted reciprocal rank
fusion (Cormack et al. 2009), which needs ranks only, so a cosine and an IDF sum never have to
share a scale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from core.store.base import StoredHit

RRF_K = 60  # the usual constant: damps the difference between the very top ranks


def fuse(
    vector_hits: Sequence[StoredHit], keyword_hits: Sequence[StoredHit], keyword_weight: float
) -> list[StoredHit]:
    """Every hit of either list, scored ``(1 - w) / (k + vector rank) + w / (k + keyword
    rank)`` (a side it is missing from adds nothing), best first, ties by id. Equal scores
    share the rank of the first of them: a word every file shares gives them all one keyword
    rank instead of favouring the lowest ids."""
    scores: dict[str, float] = {}
    hits: dict[str, StoredHit] = {}
    sides = ((vector_hits, 1.0 - keyword_weight), (keyword_hits, keyword_weight))
    for ranked, weight in sides:
        for rank, hit in _ranks(ranked):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (RRF_K + rank)
            if hit.id not in hits or hits[hit.id].vector is None:
                hits[hit.id] = hit
    order = sorted(scores, key=lambda hit_id: (-scores[hit_id], hit_id))
    return [replace(hits[hit_id], score=scores[hit_id]) for hit_id in order]


def _ranks(ranked: Sequence[StoredHit]) -> list[tuple[int, StoredHit]]:
    """1-based ranks, best first; hits of equal score (to 5 decimals) share the first's."""
    out: list[tuple[int, StoredHit]] = []
    for position, hit in enumerate(ranked, start=1):
        tied = out and round(out[-1][1].score, 5) == round(hit.score, 5)
        out.append((out[-1][0] if tied else position, hit))
    return out
