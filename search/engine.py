"""The in-process search API. The CLI, the HTTP API and the Python client share its names.

Every query becomes one unit vector: the normalized weighted sum of its normalized terms.
Scores are cosine similarities.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from core.catalog.models import Asset, AssetIndexState, IndexVersion, Location
from core.encoder import Encoder
from core.images import DecodeLimits, decode_bytes, decode_file
from core.preprocess import to_model_input
from core.runtime import Runtime
from core.store import VectorIndex
from search.query import (
    BadQuery,
    SearchOptions,
    Term,
    check_page,
    checked_options,
    keyword_words,
    parse_terms,
    path_term,
    vector_only,
)
from search.ranking import ranked_page
from search.results import AssetInfo, Hit, LabelScore, SearchPage, TextHit, TextSetInfo
from search.text_cache import TextVectorCache
from search.texts import search_texts
from search.zeroshot import (
    MAX_LABELS,
    MAX_TEMPLATES,
    checked_labels,
    checked_templates,
    label_probabilities,
    label_vectors,
)

# The result types live in search.results (shared with the light client); re-exported here.
__all__ = [
    "MAX_LABELS", "MAX_TEMPLATES", "AssetInfo", "Hit", "LabelScore", "LiveTarget", "SearchPage",
    "SearchService", "TextHit", "TextSetInfo", "UnknownAsset", "target_for",
]  # fmt: skip

_COLLAPSE_OVERFETCH = 4


class UnknownAsset(LookupError):
    pass


def _checked_id(asset_id: str) -> str:
    """Asset ids are UUIDs; anything else cannot name an asset (and must not reach the store)."""
    try:
        return str(uuid.UUID(asset_id))
    except ValueError:
        raise UnknownAsset(f"no asset with id {asset_id[:64]!r} (asset ids are UUIDs)") from None


@dataclass(frozen=True, slots=True, eq=False)
class LiveTarget:
    """One index version with everything a query needs from it: its collection, the model that
    built it (and that model's text cache), its decode limits. Swapped whole, never in parts,
    so no query is encoded by one model and searched in another's collection."""

    version: IndexVersion
    index: VectorIndex
    encoder: Encoder
    texts: TextVectorCache
    limits: DecodeLimits


def target_for(runtime: Runtime, version: IndexVersion) -> LiveTarget:
    encoder = runtime.encoder_for(version)
    return LiveTarget(
        version, runtime.index_of(version), encoder,
        TextVectorCache(encoder, runtime.settings.text_cache_size), runtime.decode_limits(version),
    )  # fmt: skip


class SearchService:
    def __init__(self, runtime: Runtime, targets: Callable[[], LiveTarget] | None = None) -> None:
        """``targets`` gives the live target per call (a server that follows activations);
        by default it is this runtime's live version, resolved once."""
        self._runtime = runtime
        self._targets = targets
        self._default: LiveTarget | None = None
        self._lock = threading.Lock()
        # Query images decode a few at a time (CLIPDEX_DECODE_WORKERS): an image of tens of
        # megapixels takes hundreds of MB, and a server answers many requests at once.
        self._decode_slots = threading.BoundedSemaphore(runtime.settings.decode_workers)

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Hold one of the service's decode slots (query images, thumbnails)."""
        with self._decode_slots:
            yield

    def target(self) -> LiveTarget:
        """The live target now; resolve it once per request and pass it on."""
        if self._targets is not None:
            return self._targets()
        with self._lock:
            if self._default is None:
                self._default = target_for(self._runtime, self._runtime.live_version())
            return self._default

    @property
    def text_cache(self) -> TextVectorCache:
        return self.target().texts

    # -- queries --------------------------------------------------------------------------
    # Each kind returns its hits; its ``*_page`` twin adds ``has_more`` and ``total``.

    def text(
        self, query: str, options: SearchOptions | None = None, target: LiveTarget | None = None
    ) -> list[Hit]:
        """``beach +sunset -people`` style text query."""
        return self.text_page(query, options, target).hits

    def image(
        self, image: Path | bytes, options: SearchOptions | None = None,
        target: LiveTarget | None = None,
    ) -> list[Hit]:  # fmt: skip
        return self.image_page(image, options, target).hits

    def similar(
        self, asset_id: str, options: SearchOptions | None = None, target: LiveTarget | None = None
    ) -> list[Hit]:
        """More like this: the asset's own vector, without the asset itself."""
        return self.similar_page(asset_id, options, target).hits

    def search(
        self, terms: Sequence[Term], options: SearchOptions | None = None,
        target: LiveTarget | None = None,
    ) -> list[Hit]:  # fmt: skip
        return self.search_page(terms, options, target).hits

    def text_page(
        self, query: str, options: SearchOptions | None = None, target: LiveTarget | None = None
    ) -> SearchPage:
        return self.search_page(parse_terms(query), options, target)

    def search_page(
        self, terms: Sequence[Term], options: SearchOptions | None = None,
        target: LiveTarget | None = None,
    ) -> SearchPage:  # fmt: skip
        """Weighted terms; in keyword and hybrid modes the words of the positive text terms
        are the keyword side (keyword mode computes no vector, so loads no model)."""
        t = target or self.target()
        options = self._checked(options)
        words = [] if options.mode == "vector" else keyword_words(terms)
        if options.mode != "vector" and not words:
            raise BadQuery(f"{options.mode} mode needs words: give text terms")
        vector = None if options.mode == "keyword" else self.query_vector(terms, t)
        return ranked_page(t.index, vector, words, options)

    def image_page(
        self, image: Path | bytes, options: SearchOptions | None = None,
        target: LiveTarget | None = None,
    ) -> SearchPage:  # fmt: skip
        t = target or self.target()
        options = vector_only(self._checked(options), "an image query")
        term = Term("image", image) if isinstance(image, bytes) else Term("path", str(image))
        return ranked_page(t.index, self._term_vector(t, term, trusted_path=True), [], options)

    def similar_page(
        self, asset_id: str, options: SearchOptions | None = None, target: LiveTarget | None = None
    ) -> SearchPage:
        t = target or self.target()
        options = vector_only(self._checked(options), "more like this")
        asset_id = _checked_id(asset_id)
        vector = self.asset_vector(asset_id, t)
        return ranked_page(t.index, vector, [], options, exclude=asset_id)

    def query_vector(
        self, terms: Sequence[Term], target: LiveTarget | None = None
    ) -> NDArray[np.float32]:
        t = target or self.target()
        if not terms:
            raise BadQuery("a query needs at least one term")
        if not any(term.weight > 0 for term in terms):
            raise BadQuery("a query needs at least one positive term")
        texts = [str(t.value) for t in terms if t.kind == "text"]
        text_vectors = iter(t.texts.encode(texts)) if texts else iter(())
        total = np.zeros(t.version.dim, dtype=np.float64)
        scale = max(abs(term.weight) for term in terms)  # only the weights' ratios matter
        for term in terms:
            vector = next(text_vectors) if term.kind == "text" else self._term_vector(t, term)
            total += (term.weight / scale) * vector.astype(np.float64)
        norm = float(np.linalg.norm(total))
        if norm <= 1e-6 * sum(abs(term.weight) / scale for term in terms):  # unit vectors
            raise BadQuery("the weighted terms cancel out; the query has no direction")
        return (total / norm).astype(np.float32)

    def texts_for_image(
        self, set_name: str, image: Path | bytes | None = None, asset_id: str | None = None,
        limit: int = 5,
    ) -> list[TextHit]:  # fmt: skip
        """Image -> text: the best captions or labels of a named text set."""
        check_page(limit, 0, self._max_limit())
        vector = self._image_or_asset(self.target(), image, asset_id)
        return search_texts(self._runtime, set_name, vector, limit)

    def classify(
        self, labels: Sequence[str], image: Path | bytes | None = None,
        asset_id: str | None = None, templates: Sequence[str] | None = None,
    ) -> list[LabelScore]:  # fmt: skip
        """Zero-shot: softmax(logit_scale * cosine) over prompt-ensemble label vectors."""
        labels = checked_labels(labels)
        templates = checked_templates(templates, self._runtime.settings.classify_templates)
        t = self.target()
        image_vector = self._image_or_asset(t, image, asset_id)
        cosines = label_vectors(t.texts.encode, labels, templates) @ image_vector
        probabilities = label_probabilities(cosines, t.encoder.logit_scale)
        ranked = sorted(zip(labels, probabilities, cosines, strict=True), key=lambda r: -r[1])
        return [LabelScore(label, float(p), float(c)) for label, p, c in ranked]

    # -- assets ---------------------------------------------------------------------------

    def asset(self, asset_id: str) -> AssetInfo:
        asset_id = _checked_id(asset_id)
        version, _ = self._runtime.existing_index()
        with self._runtime.sessions() as session:
            asset = session.get(Asset, asset_id)
            if asset is None:
                raise UnknownAsset(f"no asset with id {asset_id}")
            paths = session.scalars(
                select(Location.path)
                .where(Location.asset_id == asset_id, Location.missing.is_(False))
                .order_by(Location.path)
            ).all()
            state = session.scalars(
                select(AssetIndexState.state).where(
                    AssetIndexState.asset_id == asset_id,
                    AssetIndexState.index_version_id == version.id,
                )
            ).first()
        taken = asset.taken_at.strftime("%Y-%m-%dT%H:%M:%SZ") if asset.taken_at else None
        return AssetInfo(
            asset.id, list(paths), asset.format, asset.width, asset.height, taken,
            asset.size_bytes, asset.sha256, state, asset.meta,
        )  # fmt: skip

    def asset_vector(self, asset_id: str, target: LiveTarget | None = None) -> NDArray[np.float32]:
        asset_id = _checked_id(asset_id)
        stored = (target or self.target()).index.retrieve([asset_id], with_vectors=True)
        if not stored or stored[0].vector is None:
            raise UnknownAsset(f"no indexed asset with id {asset_id}")
        return stored[0].vector

    # -- internals ------------------------------------------------------------------------

    def _image_or_asset(
        self, t: LiveTarget, image: Path | bytes | None, asset_id: str | None
    ) -> NDArray[Any]:
        if (image is None) == (asset_id is None):
            raise BadQuery("give either an image or an asset id")
        if asset_id is not None:
            return self.asset_vector(asset_id, t)
        term = Term("image", image) if isinstance(image, bytes) else Term("path", str(image))
        return self._term_vector(t, term, trusted_path=True)

    def _term_vector(
        self, t: LiveTarget, term: Term, trusted_path: bool = False
    ) -> NDArray[np.float32]:
        if term.kind == "text":
            return np.asarray(t.texts.encode([str(term.value)])[0], dtype=np.float32)
        if term.kind == "asset":
            return self.asset_vector(str(term.value), t)
        limits = t.limits
        if term.kind == "image" and not isinstance(term.value, bytes):
            raise BadQuery("an image term carries the image's bytes")
        path = None
        if term.kind != "image":
            path = Path(str(term.value))
            if not trusted_path:
                path = path_term(str(term.value), self._runtime.settings.allowed_image_roots)
        with self.decoding():
            if isinstance(term.value, bytes):
                decoded = decode_bytes(term.value, limits)
            else:
                assert path is not None
                decoded = decode_file(path, limits)
            pixels = to_model_input(decoded.image, t.encoder.preprocess)
            del decoded  # the full-size image goes before the next request's decode starts
        encoded = t.encoder.encode_images(pixels[np.newaxis])
        return np.asarray(encoded[0], dtype=np.float32)

    def _max_limit(self) -> int:
        return self._runtime.settings.search_max_limit

    def _checked(self, options: SearchOptions | None) -> SearchOptions:
        return checked_options(options or SearchOptions(), self._max_limit())
