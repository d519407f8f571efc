"""Named text sets (captions, label lists) for image -> text search.

Each set lives in its own collection of the same store, one per set and model, and is
recorded in the catalog's ``text_sets`` table.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from core.catalog.models import IndexVersion, TextSet
from core.runtime import NoIndexYet, Runtime
from core.store.base import PointRecord
from search.query import BadQuery
from search.results import TextHit, TextSetInfo

TEXT_NAMESPACE = uuid.UUID("0f5b4f5e-3a4c-5d9e-8b2a-7c6d5e4f3a2b")
MAX_TEXTS = 100_000
MAX_TEXT_CHARS = 1000
_ENCODE_BATCH = 256


# TextHit and TextSetInfo live in search.results (shared with the light client); re-exported.
__all__ = [
    "TextHit",
    "TextSetInfo",
    "UnknownTextSet",
    "add_texts",
    "list_text_sets",
    "search_texts",
    "valid_name",
]


class UnknownTextSet(LookupError):
    pass


def valid_name(name: str) -> str:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise BadQuery("a text set name is 1-64 letters, digits, '-', '_' or '.'")
    if not name.strip("."):  # '.' and '..' are no URL path segment: /v1/texts/../search
        raise BadQuery("a text set name needs a letter, a digit, '-' or '_'")
    return name


def _collection(version: IndexVersion, name: str) -> str:
    digest = hashlib.sha256(f"{version.collection}/{name}".encode()).hexdigest()[:10]
    return f"texts-{name[:40]}-{digest}"


def add_texts(runtime: Runtime, name: str, texts: Sequence[str]) -> TextSetInfo:
    """Add (or re-add) texts to a set; the same text twice is stored once."""
    valid_name(name)
    cleaned = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not cleaned:
        raise BadQuery("no texts to add")
    if len(cleaned) > MAX_TEXTS or any(len(t) > MAX_TEXT_CHARS for t in cleaned):
        raise BadQuery(f"at most {MAX_TEXTS} texts of at most {MAX_TEXT_CHARS} characters")
    version, _ = runtime.live_index()
    index = runtime.store.open_index(_collection(version, name), version.dim)
    for start in range(0, len(cleaned), _ENCODE_BATCH):
        chunk = cleaned[start : start + _ENCODE_BATCH]
        vectors = runtime.encoder.encode_texts(chunk)
        index.upsert(
            [
                PointRecord(str(uuid.uuid5(TEXT_NAMESPACE, text)), vector, {"text": text})
                for text, vector in zip(chunk, vectors, strict=True)
            ]
        )
    with runtime.sessions() as session:
        row = session.scalars(
            select(TextSet).where(TextSet.name == name, TextSet.index_version_id == version.id)
        ).first()
        if row is None:
            row = TextSet(name=name, index_version_id=version.id, collection=index.name)
            session.add(row)
        row.count = index.count()
        session.commit()
        return TextSetInfo(name, row.count)


def list_text_sets(runtime: Runtime) -> list[TextSetInfo]:
    try:
        version, _ = runtime.existing_index()
    except NoIndexYet:  # nothing ingested: no set either
        return []
    with runtime.sessions() as session:
        rows = session.scalars(
            select(TextSet).where(TextSet.index_version_id == version.id).order_by(TextSet.name)
        )
        return [TextSetInfo(row.name, row.count) for row in rows]


def search_texts(
    runtime: Runtime, name: str, vector: NDArray[np.float32], limit: int
) -> list[TextHit]:
    version, _ = runtime.live_index()
    with runtime.sessions() as session:
        row = session.scalars(
            select(TextSet).where(TextSet.name == name, TextSet.index_version_id == version.id)
        ).first()
    if row is None:
        raise UnknownTextSet(f"no text set named {name!r} for this model; add it first")
    index = runtime.store.open_index(row.collection, version.dim)
    return [TextHit(h.payload["text"], h.score) for h in index.search(vector, limit)]
