"""Ranking refinements that look at the whole ranked list: cutoff, duplicate collapse and
date order.

Both are prefix-stable (a hit's fate depends only on the hits ranked above it and on a fixed
window of top scores), so paging through refined results stays consistent.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from core.store.base import StoredHit, as_utc

CUTOFF_WINDOW = 100  # scores the adaptive cutoff studies, whatever page is asked for
MIN_SPREAD = 0.02  # best - typical below this: nothing stands out, so nothing is returned
KEEP_RATIO = 0.5  # keep hits in the upper half between the typical score and the best


def adaptive_threshold(window_scores: Sequence[float]) -> float:
    """Where the scores drop off.

    The "typical" score is the median of the top window. A query with real matches has a best
    score well above it and keeps the hits in the upper half of that range; a query with no good
    match has a flat top and returns nothing (threshold above the best score).
    """
    if not window_scores:
        return float("inf")
    best = window_scores[0]
    typical = statistics.median(window_scores)
    spread = best - typical
    if spread < MIN_SPREAD:
        return float("inf")
    return typical + KEEP_RATIO * spread


def collapse_near_duplicates(hits: Sequence[StoredHit], threshold: float) -> list[StoredHit]:
    """Greedy from the top: drop a hit whose vector is within ``threshold`` cosine of a kept one."""
    kept: list[StoredHit] = []
    kept_vectors: list[np.ndarray] = []
    for hit in hits:
        if hit.vector is None:
            kept.append(hit)
            continue
        if kept_vectors and float(np.max(np.stack(kept_vectors) @ hit.vector)) >= threshold:
            continue
        kept.append(hit)
        kept_vectors.append(hit.vector)
    return kept


def sort_by_taken(hits: Sequence[StoredHit], newest_first: bool) -> list[StoredHit]:
    """Date taken order (stable: equal dates keep their relevance order); undated hits last,
    in relevance order, whichever the direction."""
    dated = [hit for hit in hits if hit.payload.get("taken_at")]
    undated = [hit for hit in hits if not hit.payload.get("taken_at")]
    dated.sort(key=lambda hit: -_moment(hit) if newest_first else _moment(hit))
    return dated + undated


def _moment(hit: StoredHit) -> float:
    moment = datetime.fromisoformat(str(hit.payload["taken_at"]))
    return as_utc(moment).timestamp()
