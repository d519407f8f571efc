"""Qdrant Edge's own failures, as clipdex's store errors. Edge raises a plain ``Exception``
whose text starts with "Service runtime error" when its storage fails it: a truncated vector
file, a payload page that does not decode. A read that fails so is a damaged collection
(:class:`CollectionDamaged`: one line naming `clipdex verify --repair`), not a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from core.store.base import CollectionDamaged, StoreError

_F = TypeVar("_F", bound=Callable[..., Any])
ENGINE_FAULT = "Service runtime error"
CLOSED = "Shard is not initialized"  # used after close: clipdex's own mistake, not damage


class _Named(Protocol):
    name: str


def reads(method: _F) -> _F:
    """Turn a storage failure inside the read ``method`` of a collection into
    :class:`CollectionDamaged`; every other error goes on as it is."""

    @functools.wraps(method)
    def guarded(self: _Named, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as error:
            if ENGINE_FAULT in str(error) and CLOSED not in str(error):
                raise CollectionDamaged(self.name, str(error)) from error
            raise

    return cast(_F, guarded)
