"""Reading an embedded collection's files into the page cache around Qdrant Edge's open.

Qdrant Edge drops a collection's pages from the page cache when it closes it, and its open
faults the files it maps back in a page at a time: at 1M points the int8 codes alone (516 MB)
took 5-8 s to come back that way on this machine's disk, which reads 1.4 GB/s in sequence. So
``read_for_open`` reads the files the open needs (graph links, int8 codes, payload and keyword
indexes, id tracker) once, in order, just before it; the open then finds them in the cache.
``prefetch_vectors`` has the kernel read the float vectors (2 GB at 1M points, used to
rescore each search's candidates; a plain segment's chunks, scanned whole) in the background
after the open: the open does not wait for them, and once they are read searches no longer
fault them in from the disk one page at a time. Neither changes what is stored; both are
measured in ``bench/store_bench.py`` (reopen + first search, and the searches after it).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_READ_AT_OPEN_DIRS = frozenset({"payload_index", "vector_index", "vector_index-keywords"})
_FLOAT_VECTORS = "matrix.dat"  # an indexed segment's; a plain one's are vectors/chunk_*.mmap
_BUFFER = 8 << 20
_ADVISE_STEP = 4 << 20  # within any device's read-ahead cap on one WILLNEED advice


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
    """Have the kernel read the float vectors into the page cache, from a daemon thread: the
    caller does not wait. Linux caps one ``WILLNEED`` advice at the device's read-ahead
    window (8 MB here), so each file is advised one window at a time. A no-op without
    ``posix_fadvise``; a file that vanishes meanwhile is skipped."""
    if getattr(os, "posix_fadvise", None) is None:
        return
    files = [file for file in collection.rglob("*") if _float_vectors(file)]
    if files:
        threading.Thread(
            target=_advise, args=(files,), name="clipdex-prefetch", daemon=True
        ).start()


def _advise(files: list[Path]) -> None:
    for file in files:
        try:
            with file.open("rb", buffering=0) as handle:
                size = os.fstat(handle.fileno()).st_size
                for offset in range(0, size, _ADVISE_STEP):
                    os.posix_fadvise(handle.fileno(), offset, _ADVISE_STEP, os.POSIX_FADV_WILLNEED)
        except OSError:
            continue
