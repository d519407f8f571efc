"""The search graph after a run that wrote vectors: built where nobody waits on the process.

An embedded store builds its graph (HNSW) only when asked, and the build pauses the whole
process (``core.store.edge_tuning``). A CLI ingest or reindex owns the store alone, so it asks
at its end; a server never does (``build_index=False`` there). A server-backed store builds by
itself and reports nothing due."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.store import VectorIndex

if TYPE_CHECKING:  # ingest.run imports this module: the protocol is only for the checker
    from ingest.run import Progress

PHASE = "indexing for search"


def build_search_graph(index: VectorIndex, progress: Progress | None = None) -> int:
    """Let the store index what is due; returns the vectors it was estimated to index. The
    phase is always shown: the store's optimizer may also merge or vacuum segments that the
    estimate does not count (after deletions), and a build cannot be interrupted."""
    due = index.build_due()
    if progress is not None:
        progress.phase(PHASE, max(due, 1))
    index.optimize()
    if progress is not None:
        progress.advance(max(due, 1))
    return due
