"""What clipdex reads, and the one thing it adjusts, in an embedded collection's files.

**The filter-scan threshold of each built segment.** At every filtered search Qdrant chooses,
segment by segment, between scanning the points the filter matches (near-exact) and walking
the graph with ACORN. It scans when the filter matches fewer points than the segment's
``full_scan_threshold`` (a number of vectors), which the build writes into the segment's
``vector_index/hnsw_config.json`` from the collection's setting (one number for every
segment) and every open reads back. ACORN's recall falls with the *share* of a segment a
filter matches, not with the count: at 1M points a filter matching 10% of them walked at
recall 0.970-0.984, from 12-13% on at 0.984-0.994. The collection's 100,000 is 10% of a
million-point segment; 125,000 for the whole collection also scanned every segment smaller
than that on searches without a filter (at 100k points: 4.3 ms instead of the graph's 1.6).
So each built segment's threshold is raised to its own share (``EdgeTuning.segment_scan``):
a million-point segment scans what 12.5% of it match, segments under 800,000 points keep
the collection's 100,000, and a segment is still scanned whole without a filter only once
more than 7/8 of the vectors it was built with are deleted (Qdrant compares the vectors left).

The change is only ever a raise (a collection made with a higher threshold keeps it), and it
is made with the shard closed: before an open, and by ``EdgeIndex.optimize`` after a build,
which then opens the shard again. The file is Qdrant's: if its layout changes (the keys are
not there) nothing is written and Qdrant's own threshold stays.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

_GRAPH_CONFIG = "vector_index/hnsw_config.json"  # the dense vector's; sparse: vector_index-*
_THRESHOLD = "full_scan_threshold"
_SIZE = "indexed_vector_count"

log = logging.getLogger(__name__)


def raise_scan_thresholds(collection: Path, wanted: Callable[[int], int]) -> int:
    """Raise each built segment's threshold to ``wanted(vectors in it)`` where that is higher.
    Returns how many segments changed."""
    changed = 0
    for config_file in sorted((collection / "segments").glob(f"*/{_GRAPH_CONFIG}")):
        try:
            config = json.loads(config_file.read_text())
            current, size = int(config[_THRESHOLD]), int(config[_SIZE])
        except (OSError, ValueError, TypeError, KeyError):
            continue  # not the layout this was written for: Qdrant's value stays
        target = wanted(size)
        if target <= current:
            continue
        config[_THRESHOLD] = target
        try:
            _replace(config_file, json.dumps(config))
        except OSError as error:  # a full disk: the segment searches as Qdrant built it
            log.warning("cannot raise the filter-scan threshold in %s: %s", config_file, error)
            continue
        changed += 1
    return changed


def _replace(target: Path, text: str) -> None:
    """Whole or not at all, on disk too: an empty graph config after a power cut would stop
    the collection from opening (Qdrant's own save syncs the same way)."""
    partial = target.with_name(target.name + ".clipdex-partial")
    try:
        with partial.open("w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def has_keywords(collection: Path, vector: str) -> bool:
    """Whether the collection was made with the keyword (sparse) vector called ``vector``."""
    try:
        config = json.loads((collection / "edge_config.json").read_text())
    except (OSError, ValueError):
        return True  # unknown: the first write finds out
    return vector in (config.get("sparse_vectors") or {})


def stored_dim(collection: Path) -> int | None:
    """The dense vectors' size the collection was made with (None: unknown)."""
    try:
        config = json.loads((collection / "edge_config.json").read_text())
        return int(config["vectors"][""]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def set_aside_folder(collection: Path) -> str | None:
    """Rename a collection's folder to a hidden ``.damaged-<name>-<UTC time>`` beside it (no
    collection name starts with a dot), kept until its operator deletes it."""
    if not collection.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = collection.with_name(f".damaged-{collection.name}-{stamp}")
    collection.rename(aside)
    return str(aside)
