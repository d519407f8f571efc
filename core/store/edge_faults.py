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
# Failures of the machine, not of the collection's files: no reason to set it aside.
NOT_DAMAGE = (CLOSED, "No space left", "Too many open files", "Cannot allocate memory")


def is_damage(error: Exception) -> bool:
    """Whether Edge failed on the collection's own files (not on the disk, the memory)."""
    text = str(error)
    return ENGINE_FAULT in text and not any(marker in text for marker in NOT_DAMAGE)


def open_failure(name: str, error: Exception, created: bool) -> StoreError:
    """What a failure to create or load the collection ``name`` is: damage only when loading
    files that are there fails for a reason of their own."""
    if created or isinstance(error, OSError) or any(m in str(error) for m in NOT_DAMAGE):
        return StoreError(f"cannot open embedded collection {name!r}: {error}")
    return CollectionDamaged(name, str(error))


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
            if is_damage(error):
                raise CollectionDamaged(self.name, str(error)) from error
            raise

    return cast(_F, guarded)
