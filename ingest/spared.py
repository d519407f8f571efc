"""Paths under a run's roots that it leaves as they are: a library root that is not mounted,
clipdex's own folders, a folder the scan could not list, a file it could not stat. A few
are excluded in SQL; a scan can meet hundreds (``chmod -R`` on a big folder), more than a
query can hold (SQLite's expression depth), so past ``SQL_MAX`` rows are filtered here."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import ColumnElement, SQLColumnExpression, not_, or_

from ingest.register import root_clause

SQL_MAX = 50


class Spared:
    def __init__(self, paths: Iterable[Path]) -> None:
        keys: list[str] = []
        for key in sorted({str(path).rstrip("/") + "/" for path in paths}):
            if not (keys and key.startswith(keys[-1])):  # one under another: the outer holds it
                keys.append(key)
        self._keys = keys  # sorted, none a prefix of another

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def in_sql(self) -> bool:
        return len(self._keys) <= SQL_MAX

    def clause(self, column: SQLColumnExpression[str]) -> ColumnElement[bool] | None:
        """``NOT (under any)`` for a query, when there are some and few enough."""
        if not self._keys or not self.in_sql:
            return None
        return not_(or_(*(root_clause(Path(key[:-1] or "/"), column) for key in self._keys)))

    def holds(self, path: str) -> bool:
        """Whether ``path`` is one of the spared paths or lies under one. The keys are sorted
        and none is a prefix of another, so the only candidate is the greatest key not past
        ``path + "/"``."""
        probe = path.rstrip("/") + "/"
        at = bisect_right(self._keys, probe) - 1
        return at >= 0 and probe.startswith(self._keys[at])
