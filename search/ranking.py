"""From checked options to one page: candidates from the store (vector side, keyword side or
both), then the refinements in a fixed order (cutoff, fusion, collapse, date sort), then the
page, ``has_more`` and, where it is known exactly and cheaply, ``total``.

Every refinement is prefix-stable or works on a fixed window, so paging stays consistent:
- the adaptive cutoff decides what is relevant from the top ``CUTOFF_WINDOW`` vector scores;
- hybrid fuses the top ``HYBRID_WINDOW`` of each side, the same for every page;
- a date sort orders the relevant set: what the cutoff kept, else the best ``SORT_WINDOW``;
- collapsing keeps, greedily from the top, what is not a near duplicate of a hit kept above.

The store orders equal scores by id (``core.store.base.ranked_slice``), so the order does
not depend on how many candidates a page asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import NDArray

from core.store.base import StoredHit, VectorIndex
from search.fusion import fuse
from search.postprocess import (
    CUTOFF_WINDOW,
    adaptive_threshold,
    collapse_near_duplicates,
    sort_by_taken,
)
from search.query import SearchOptions, page_size
from search.results import Hit, SearchPage
from search.shown_path import shown_hit

# Hybrid fuses, and a date sort without a cutoff orders, a fixed window of best candidates per
# side, the same for every page (a window that grew with the page would reorder earlier
# pages); paging ends at the window's end.
HYBRID_WINDOW = 500
SORT_WINDOW = 1000
# Collapsing looks at the best candidates, four times the page at first and deeper while
# the page is not full, up to this many; paging ends where the window does. Greedy from the
# top over one order, so a deeper look only adds to what a shallower one kept.
COLLAPSE_WINDOW = 500
_COLLAPSE_OVERFETCH = 4
# A plain page's ``total`` is counted exactly when the store's estimate is at most this many
# matches (about 1 ms at 1M points); more get no total (except on their last page) rather
# than a count that costs more than the search (13-45 ms at 10-33% of 1M). Without a filter
# the embedded store always has one: it keeps its point count.
EXACT_TOTAL_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Candidates:
    hits: list[StoredHit]
    complete: bool  # every hit of the query is in ``hits`` (so its length is the total)


def ranked_page(
    index: VectorIndex,
    vector: NDArray[np.float32] | None,
    words: Sequence[str],
    options: SearchOptions,
    exclude: str | None = None,
) -> SearchPage:
    """``vector`` is None in keyword mode, ``words`` empty in vector mode; ``exclude``: an id
    that is never a hit (the asset a "more like this" starts from)."""
    if _plain(options, exclude):
        assert vector is not None
        return _plain_page(index, vector, options)
    wanted = options.offset + page_size(options)
    depth = _depth(options, wanted)
    candidates = _candidates(index, vector, words, options, depth, exclude)
    hits = candidates.hits
    if options.collapse_duplicates is not None:
        hits = collapse_near_duplicates(hits, options.collapse_duplicates)
        # Collapsing can leave fewer hits than the page needs: look deeper, up to the window.
        while len(hits) <= wanted and not candidates.complete and depth < COLLAPSE_WINDOW:
            depth = min(depth * _COLLAPSE_OVERFETCH, COLLAPSE_WINDOW)
            candidates = _candidates(index, vector, words, options, depth, exclude)
            hits = collapse_near_duplicates(candidates.hits, options.collapse_duplicates)
    if options.sort != "relevance":
        hits = sort_by_taken(hits, newest_first=options.sort == "-taken_at")
    shown = _shown(options, words)
    scored = [shown(hit) for hit in hits[options.offset : wanted]]
    total = len(hits) if candidates.complete else None
    return SearchPage(scored, has_more=len(hits) > wanted, total=total)


def _shown(options: SearchOptions, words: Sequence[str]) -> Callable[[StoredHit], Hit]:
    return partial(shown_hit, folder=options.filters.folder, words=words)


def _plain(options: SearchOptions, exclude: str | None) -> bool:
    """A vector query with no refinement: one store call for exactly the page."""
    return (
        options.mode == "vector" and exclude is None and options.sort == "relevance"
        and not options.adaptive_cutoff and options.collapse_duplicates is None
    )  # fmt: skip


def _plain_page(
    index: VectorIndex, vector: NDArray[np.float32], options: SearchOptions
) -> SearchPage:
    limit = page_size(options)
    stored = index.search(vector, limit + 1, options.offset, options.filters)
    floor = options.min_score
    kept = [hit for hit in stored if floor is None or hit.score >= floor]
    shown = _shown(options, ())
    hits = [shown(hit) for hit in kept[:limit]]
    more = len(kept) > limit
    total = index.count_if_cheap(options.filters, EXACT_TOTAL_LIMIT) if floor is None else None
    floor_here = len(kept) < len(stored)
    if (floor_here or (total is None and not more)) and (kept or options.offset == 0):
        total = options.offset + len(kept)  # the floor, or the last match, is on this page
    return SearchPage(hits, has_more=more, total=total)


def _depth(options: SearchOptions, wanted: int) -> int:
    """How many ranked candidates each side fetches from the top."""
    depth = wanted + 1
    if options.adaptive_cutoff:
        depth = max(depth, CUTOFF_WINDOW)
    if options.collapse_duplicates is not None:
        collapse = min((wanted + 1) * _COLLAPSE_OVERFETCH, COLLAPSE_WINDOW)
        depth = max(collapse, CUTOFF_WINDOW if options.adaptive_cutoff else 0)
    fixed = [HYBRID_WINDOW] if options.mode == "hybrid" else []
    if options.sort != "relevance" and not options.adaptive_cutoff:
        fixed.append(SORT_WINDOW)
    return max(fixed) if fixed else depth


def _candidates(
    index: VectorIndex,
    vector: NDArray[np.float32] | None,
    words: Sequence[str],
    options: SearchOptions,
    depth: int,
    exclude: str | None,
) -> Candidates:
    with_vectors = options.collapse_duplicates is not None
    fetch = depth + (exclude is not None)
    sides: list[Candidates] = []
    if vector is not None:
        stored = index.search(vector, fetch, 0, options.filters, with_vectors=with_vectors)
        sides.append(_relevant(stored, fetch, options, exclude))
    if words:
        stored = index.keyword_search(words, fetch, options.filters, with_vectors=with_vectors)
        sides.append(_without(stored, fetch, exclude))
    complete = all(side.complete for side in sides)
    if len(sides) == 2:
        return Candidates(fuse(sides[0].hits, sides[1].hits, options.keyword_weight), complete)
    return Candidates(sides[0].hits, complete)


def _relevant(
    stored: list[StoredHit], fetched: int, options: SearchOptions, exclude: str | None
) -> Candidates:
    """The vector side above ``min_score`` and the adaptive cutoff (scores descend, so once
    one hit falls below, every later one does: the relevant set is then complete)."""
    floor = options.min_score if options.min_score is not None else -1.0
    if options.adaptive_cutoff:
        window = [hit.score for hit in stored if hit.id != exclude][:CUTOFF_WINDOW]
        floor = max(floor, adaptive_threshold(window))
    return _without([hit for hit in stored if hit.score >= floor], fetched, exclude)


def _without(stored: list[StoredHit], fetched: int, exclude: str | None) -> Candidates:
    return Candidates([hit for hit in stored if hit.id != exclude], len(stored) < fetched)
