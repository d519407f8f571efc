"""Which of a hit's paths a result shows. An asset (one set of bytes) may live at several
paths; its payload's ``path`` is the first of them in sort order. A search narrowed to a
folder shows a path in that folder, and a keyword match shows the path whose words matched,
so that a client opening ``hit.path`` reads the file it asked for."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import replace

from core.store.base import StoredHit
from core.store.keywords import words as words_of
from search.results import Hit


def shown_hit(stored: StoredHit, folder: str | None, words: Sequence[str]) -> Hit:
    hit = Hit.from_stored(stored)
    paths = [str(path) for path in stored.payload.get("paths") or []]
    if len(paths) < 2 or hit.path is None:
        return hit
    chosen = _chosen(paths, folder, words)
    if chosen == hit.path:
        return hit
    own_name = hit.name == posixpath.basename(hit.path)  # not an upload's original name
    return replace(hit, path=chosen, name=posixpath.basename(chosen) if own_name else hit.name)


def _chosen(paths: list[str], folder: str | None, words: Sequence[str]) -> str:
    if folder is not None and folder != "/":
        inside = [path for path in paths if path.startswith(folder.rstrip("/") + "/")]
        paths = inside or paths
    wanted = set(words)
    if wanted:  # the most query words in the path; the first such path on a tie
        best = max(paths, key=lambda path: len(wanted.intersection(words_of(path))))
        if wanted.intersection(words_of(best)):
            return best
    return paths[0]
