"""Text -> image and image -> image search over the live index. Scores are cosine similarities."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clipdex.images import decode_bytes, decode_file
from clipdex.preprocess import to_model_input
from clipdex.runtime import Runtime
from clipdex.store.base import SearchFilter, StoredHit


class BadQuery(ValueError):
    """The caller asked for something invalid; the message says what."""


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    path: str | None
    width: int | None
    height: int | None
    format: str | None
    taken_at: str | None

    @classmethod
    def from_stored(cls, stored: StoredHit) -> Hit:
        payload = stored.payload
        return cls(
            id=stored.id,
            score=stored.score,
            path=payload.get("path"),
            width=payload.get("width"),
            height=payload.get("height"),
            format=payload.get("format"),
            taken_at=payload.get("taken_at"),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchService:
    """The in-process search API. The CLI and (later) the HTTP API call exactly this."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def text(
        self, query: str, limit: int = 10, offset: int = 0, filters: SearchFilter | None = None
    ) -> list[Hit]:
        if not query.strip():
            raise BadQuery("the query text is empty")
        vector = self._runtime.encoder.encode_texts([query])[0]
        return self.vector(vector, limit, offset, filters)

    def image(
        self,
        image: Path | bytes,
        limit: int = 10,
        offset: int = 0,
        filters: SearchFilter | None = None,
    ) -> list[Hit]:
        limits = self._runtime.decode_limits()
        decoded = (
            decode_file(image, limits) if isinstance(image, Path) else decode_bytes(image, limits)
        )
        pixels = to_model_input(decoded.image, self._runtime.encoder.preprocess)
        vector = self._runtime.encoder.encode_images(pixels[np.newaxis])[0]
        return self.vector(vector, limit, offset, filters)

    def vector(
        self,
        vector: NDArray[np.float32],
        limit: int = 10,
        offset: int = 0,
        filters: SearchFilter | None = None,
    ) -> list[Hit]:
        maximum = self._runtime.settings.search_max_limit
        if not 1 <= limit <= maximum:
            raise BadQuery(f"limit must be between 1 and {maximum}, got {limit}")
        if offset < 0:
            raise BadQuery(f"offset must be 0 or more, got {offset}")
        _, index = self._runtime.live_index()
        stored = index.search(vector, limit=limit, offset=offset, search_filter=filters)
        return [Hit.from_stored(hit) for hit in stored]
