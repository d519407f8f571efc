"""The keyword side of search: words of a payload as a sparse vector that Qdrant scores.

Each word becomes one dimension (a 32-bit hash of the word), weight 1. The collection's
``keywords`` sparse vector carries Qdrant's IDF modifier, so a rare word (a file name, a tag)
outweighs a common one (a top folder): BM25-like ranking by Qdrant itself, on Qdrant Edge and
qdrant-client alike. The words come from the payload the catalog derives, so a move or a new
tag rewrites them with the payload.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

KEYWORDS_VECTOR = "keywords"
MAX_WORDS = 512  # per point; a huge description must not make a huge vector
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Payload keys whose text is searchable by keyword (``meta`` values and ``paths`` are walked).
TEXT_KEYS = ("name", "camera_make", "camera_model", "description")


def words(text: str) -> list[str]:
    """Lower-cased letter/digit runs: 'IMG_0042.JPG' -> ['img', '0042', 'jpg']."""
    return _WORD.findall(text.casefold())


def payload_words(payload: dict[str, Any]) -> set[str]:
    """Every searchable word of a point: its name, the folders of its paths, the values (and
    tags) of its user metadata and its EXIF text. Past ``MAX_WORDS`` the later ones in that
    order are dropped, so a long description never hides the file's own name."""
    found: dict[str, None] = dict.fromkeys(words(str(payload.get("name") or "")))
    for path in payload.get("paths") or [payload.get("path") or ""]:
        found.update(dict.fromkeys(words(str(path))))
    for value in _flat_values(payload.get("meta") or {}):
        found.update(dict.fromkeys(words(value)))
    for key in TEXT_KEYS:
        found.update(dict.fromkeys(words(str(payload.get(key) or ""))))
    return set(list(found)[:MAX_WORDS])


def _flat_values(meta: Any) -> Iterable[str]:
    if isinstance(meta, dict):
        for value in meta.values():
            yield from _flat_values(value)
    elif isinstance(meta, list):
        for value in meta:
            yield from _flat_values(value)
    elif meta is not None:
        yield str(meta)


def word_index(word: str) -> int:
    """A stable 32-bit dimension for a word (Qdrant sparse indices are u32)."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")


def sparse_of(found: Iterable[str]) -> tuple[list[int], list[float]]:
    """Indices and weights of a set of words; colliding hashes add up."""
    weights: dict[int, float] = {}
    for word in found:
        index = word_index(word)
        weights[index] = weights.get(index, 0.0) + 1.0
    indices = sorted(weights)
    return indices, [weights[i] for i in indices]
