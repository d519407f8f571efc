"""Split id lists so ``IN (...)`` clauses stay under SQLite's bound-variable limit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

IN_CLAUSE_SIZE = 500


def chunked(values: Iterable[str], size: int = IN_CLAUSE_SIZE) -> Iterator[list[str]]:
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]
