"""The plain result types that the in-process ``SearchService`` returns and the HTTP client
rebuilds from JSON. Nothing but dataclasses: importing this module loads no catalog, store,
image or model code, so the light client (``search.client``) can share them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.store.base import StoredHit


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    path: str | None
    width: int | None
    height: int | None
    format: str | None
    taken_at: str | None
    name: str | None = None  # the original file name (an upload's, not its stored hash name)
    orientation: str | None = None  # portrait, landscape or square (as displayed)
    bytes: int | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    description: str | None = None  # EXIF image description
    meta: dict[str, Any] | None = None  # the user's own metadata and tags

    @classmethod
    def from_stored(cls, stored: StoredHit, score: float | None = None) -> Hit:
        """``score``: a fused score in place of the store's (hybrid search)."""
        payload = stored.payload
        return cls(
            id=stored.id,
            score=stored.score if score is None else score,
            **{name: payload.get(name) for name in _PAYLOAD_FIELDS},
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_PAYLOAD_FIELDS = (
    "path", "width", "height", "format", "taken_at", "name", "orientation", "bytes",
    "camera_make", "camera_model", "description", "meta",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of hits. ``has_more``: a next page exists. ``total``: how many hits the whole
    query has, where that is known exactly and cheaply (else None; see ``search.ranking``)."""

    hits: list[Hit]
    has_more: bool
    total: int | None = None


@dataclass(frozen=True, slots=True)
class AssetInfo:
    id: str
    paths: list[str]
    format: str | None
    width: int | None
    height: int | None
    taken_at: str | None
    bytes: int
    sha256: str
    state: str | None
    meta: dict[str, Any] | None = None  # the user's own metadata

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LabelScore:
    label: str
    probability: float
    score: float  # cosine between the image and the label's prompt ensemble


@dataclass(frozen=True, slots=True)
class TextHit:
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class TextSetInfo:
    name: str
    count: int


__all__ = ["AssetInfo", "Hit", "LabelScore", "SearchPage", "TextHit", "TextSetInfo"]
