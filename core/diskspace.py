"""A floor of free disk space under everything clipdex writes (catalog, store, blobs).

A full disk mid-write is the worst place to find out: the embedded store's memory maps die of
SIGBUS, SQLite and the store end in disagreement. So writers check the floor before they start
and before each batch, and stop with one line while there is still room to stop cleanly."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from core.paths import expand_user
from core.store.base import StoreError


class DiskFull(StoreError):
    """Less than the configured floor of free space is left where clipdex writes."""


def _existing(path: Path) -> Path:
    """The nearest existing ancestor: a home or blob root may not exist yet."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(paths: Iterable[Path], floor: int) -> None:
    """Raise :class:`DiskFull` when any of ``paths`` is on a disk with less than ``floor``
    bytes free (``floor=0`` turns the check off)."""
    if floor <= 0:
        return
    for path in paths:
        target = _existing(expand_user(path))
        free = shutil.disk_usage(target).free
        if free < floor:
            raise DiskFull(
                f"only {free // (1024 * 1024)} MiB free on the disk holding {target} (clipdex "
                f"stops below {floor // (1024 * 1024)} MiB, CLIPDEX_MIN_FREE_BYTES): free some "
                "space and run the command again; what was stored so far is kept"
            )


def write_paths(home: Path, blobs: Path, catalog_url: str) -> list[Path]:
    """Every place a run writes: the home (embedded store, SQLite), the blobs, a SQLite file
    elsewhere."""
    paths = [home, blobs]
    if catalog_url.startswith("sqlite:///"):
        paths.append(Path(catalog_url.removeprefix("sqlite:///")).parent)
    return [Path(p) for p in dict.fromkeys(os.path.realpath(p) for p in paths)]
