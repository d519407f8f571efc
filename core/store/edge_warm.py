"""Reading an embedded collection's files into the page cache around Qdrant Edge's open.

Qdrant Edge drops a collection's pages from the page cache when it closes it, and its open
faults the files it maps back in a page at a time: at 1M points the int8 codes alone (516 MB)
took 5-8 s to come back that way on this machine's disk, which reads 1.4 GB/s in sequence. So
``read_for_open`` reads the files the open needs (graph links, int8 codes, payload and keyword
indexes, id tracker) once, in order, just before it; the open then finds them in the cache.
``prefetch_vectors`` asks the kernel to read the float vectors (2 GB at 1M points, used to
rescore each search's candidates; a plain segment's chunks, scanned whole) in the background
after the open, so searches do not fault them in one by one and the open does not wait for
them. Neither changes what is stored; both are measured in ``bench/store_bench.py`` (reopen +
first search).
"""

from __future__ import annotations

import os
from pathlib import Path

_READ_AT_OPEN_DIRS = frozenset({"payload_index", "vector_index", "vector_index-keywords"})
_FLOAT_VECTORS = "matrix.dat"  # an indexed segment's; a plain one's are vectors/chunk_*.mmap
_BUFFER = 8 << 20


def _read_at_open(file: Path) -> bool:
    return (
        file.name == "quantized.data"
        or file.name.startswith("id_tracker")
        or not _READ_AT_OPEN_DIRS.isdisjoint(file.parts)
    )


def _float_vectors(file: Path) -> bool:
    dense = file.parent.name == "vector_storage" or file.parent.parent.name == "vector_storage"
    return dense and (file.name == _FLOAT_VECTORS or file.name.startswith("chunk_"))


def read_for_open(collection: Path) -> None:
    """Read, once and in order, the files Qdrant Edge's open maps; errors are left to it."""
    buffer = bytearray(_BUFFER)
    for file in sorted(collection.rglob("*")):
        if not file.is_file() or not _read_at_open(file.relative_to(collection)):
            continue
        try:
            with file.open("rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass
        except OSError:
            continue  # a file that vanished or cannot be read: the open reports what matters


def prefetch_vectors(collection: Path) -> None:
    """Start the kernel reading the float vectors in the background (no-op without fadvise)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    for file in collection.rglob("*"):
        if not _float_vectors(file):
            continue
        try:
            with file.open("rb", buffering=0) as handle:
                advise(handle.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            continue
