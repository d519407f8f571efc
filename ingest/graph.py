"""The search graph after a run that wrote vectors: built where nobody waits on the process.

An embedded store builds its graph (HNSW) only when asked, and the build pauses the whole
process (``core.store.edge_tuning``). A CLI ingest or reindex owns the store alone, so it asks
at its end; a server never does (``build_index=False`` there). A server-backed store builds by
itself and reports nothing due."""

from __future__ import annotations

from typing import Protocol

from core.store import VectorIndex

PHASE = "indexing for search"


class Progress(Protocol):
    def phase(self, name: str, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


def build_search_graph(index: VectorIndex, progress: Progress) -> int:
    """Index what is due (shown as a phase when there is any); returns how many vectors. The
    store's own optimizer decides what to rebuild: with nothing due this costs microseconds."""
    due = index.build_due()
    if due:
        progress.phase(PHASE, due)
    index.optimize()
    if due:
        progress.advance(due)
    return due
