"""Hashing the files a scan found as new or changed: SHA-256 of the bytes, and the asset id."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from core.ids import asset_id_for_digest, sha256_of_file
from ingest.scan import FoundFile

HASH_SLICE = 64  # files per hashing task: amortizes the thread pool's cost per task
# Threads pay off only when hashing (which releases the GIL) outweighs the per-file Python work:
# measured here, 2 threads halve the time from 256 KiB a file, tie at 64 KiB, double it at 4 KiB.
PARALLEL_HASH_BYTES = 64 * 1024


class Content(NamedTuple):
    """What hashing a file found: its SHA-256 and the asset id derived from it."""

    sha256: str
    asset_id: str

    @classmethod
    def of(cls, sha256: str) -> Content:
        return cls(sha256, asset_id_for_digest(sha256))


def hash_all(
    files: Sequence[FoundFile],
    workers: int,
    failed: list[tuple[str, str]],
    on_hashed: Callable[[int], None] | None,
) -> dict[str, Content]:
    """Hash ``files`` in order, on ``workers`` threads when they are large enough to gain from
    it (PARALLEL_HASH_BYTES); the unreadable go to ``failed`` with a reason."""
    contents: dict[str, Content] = {}
    if not files:
        return contents
    parallel = workers > 1 and sum(f.size for f in files) >= len(files) * PARALLEL_HASH_BYTES
    step = max(1, min(HASH_SLICE, len(files) // (workers * 4))) if parallel else HASH_SLICE
    slices = [files[start : start + step] for start in range(0, len(files), step)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for results in pool.map(_hash_slice, slices) if parallel else map(_hash_slice, slices):
            for path, content, reason in results:
                if content is not None:
                    contents[path] = content
                else:
                    failed.append((path, reason or "unreadable"))
                if on_hashed is not None:
                    on_hashed(1)
    return contents


def _hash_slice(files: Sequence[FoundFile]) -> list[tuple[str, Content | None, str | None]]:
    results: list[tuple[str, Content | None, str | None]] = []
    for item in files:
        try:
            results.append((item.path, Content.of(sha256_of_file(Path(item.path))), None))
        except OSError as error:
            results.append((item.path, None, f"cannot read file: {error.strerror or error}"))
    return results
