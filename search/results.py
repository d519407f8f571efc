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


__all__ = ["AssetInfo", "Hit", "LabelScore", "TextHit", "TextSetInfo"]
