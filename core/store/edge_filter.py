"""clipdex's store-neutral filter (``core.store.base.conditions``) as a Qdrant Edge filter."""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe

from core.store.base import Between, Condition, Match, SearchFilter, conditions, rfc3339


def to_edge_filter(search_filter: SearchFilter | None) -> qe.Filter | None:
    found = conditions(search_filter)
    return qe.Filter(must=[_condition(c) for c in found]) if found else None


def _condition(condition: Condition) -> Any:
    if isinstance(condition, Match):
        values = list(condition.values)
        match = qe.MatchValue(values[0]) if len(values) == 1 else qe.MatchAny(values)
        return qe.FieldCondition(condition.key, match=match)
    if isinstance(condition, Between):
        return qe.FieldCondition(
            condition.key, range=qe.RangeFloat(gte=condition.low, lte=condition.high)
        )
    after, before = condition.after, condition.before
    return qe.FieldCondition(
        condition.key,
        range=qe.RangeDateTime(
            gte=rfc3339(after) if after else None, lt=rfc3339(before) if before else None
        ),
    )
