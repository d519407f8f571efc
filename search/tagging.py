"""Zero-shot tagging of a library: each asset's stored vector against prompt-ensemble label
vectors; the best label is written into the asset's metadata (``meta[key] = label`` and
``meta[key + "_score"] = probability``), in the catalog and in the point's payload (``meta``),
so that a metadata filter and keyword search find it. No image is decoded or encoded again:
the vectors come from the index. Work goes in chunks: one ``retrieve``, one catalog read and
write, one ``set_payloads`` per chunk."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.batching import chunked
from core.catalog.models import Asset
from core.store.base import META_PREFIX, Payload, StoredHit
from search.engine import LiveTarget
from search.query import BadQuery
from search.zeroshot import checked_labels, checked_templates, label_probabilities, label_vectors

CHUNK = 500
META_PAYLOAD_KEY = META_PREFIX.rstrip(".")  # the payload holds the asset's metadata here
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class TagRequest:
    labels: Sequence[str]
    key: str
    templates: Sequence[str] | None = None


@dataclass(slots=True)
class TagReport:
    key: str
    tagged: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "tagged": self.tagged, "labels": dict(self.counts.most_common())}


def score_key(key: str) -> str:
    """Where the winning label's probability is stored beside the label."""
    return f"{key}_score"


def checked_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise BadQuery("a tag key is 1 to 64 letters, digits, '_' or '-'", repr(key))
    return key


def tag_assets(
    target: LiveTarget,
    sessions: sessionmaker[Session],
    request: TagRequest,
    ids: Iterable[str],
    default_templates: Sequence[str],
) -> TagReport:
    """Tag the points ``ids`` of the target's index (ids with no point are left out)."""
    key = checked_key(request.key)
    labels = checked_labels(request.labels)
    templates = checked_templates(request.templates, default_templates)
    vectors = label_vectors(target.texts.encode, labels, templates)
    report = TagReport(key)
    for chunk in chunked(ids, CHUNK):
        points = [
            p for p in target.index.retrieve(chunk, with_vectors=True) if p.vector is not None
        ]
        if not points:
            continue
        images = np.stack([np.asarray(p.vector, dtype=np.float32) for p in points])
        images /= np.maximum(np.linalg.norm(images, axis=1, keepdims=True), 1e-12)
        probabilities = label_probabilities(images @ vectors.T, target.encoder.logit_scale)
        best = probabilities.argmax(axis=1)
        tags = {
            point.id: {key: labels[b], score_key(key): round(float(row[b]), 4)}
            for point, b, row in zip(points, best.tolist(), probabilities, strict=True)
        }
        metas = _write_catalog(sessions, tags)
        target.index.set_payloads(_payloads(points, metas))
        report.tagged += len(metas)
        report.counts.update(str(metas[asset_id][key]) for asset_id in metas)
    return report


def _write_catalog(
    sessions: sessionmaker[Session], tags: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Merge ``tags`` into each asset's metadata (other keys kept); the new metadata by id."""
    written: dict[str, dict[str, Any]] = {}
    with sessions() as session:
        for asset in session.scalars(select(Asset).where(Asset.id.in_(list(tags)))):
            asset.meta = {**(asset.meta or {}), **tags[asset.id]}
            written[asset.id] = asset.meta
        session.commit()
    return written


def _payloads(points: list[StoredHit], metas: dict[str, dict[str, Any]]) -> dict[str, Payload]:
    """Each point's payload with the new metadata (the rest of it is already the catalog's)."""
    return {
        point.id: {**point.payload, META_PAYLOAD_KEY: metas[point.id]}
        for point in points
        if point.id in metas
    }
