"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Weight = Annotated[float, Field(ge=-100, le=100)]


class TermIn(BaseModel):
    """One weighted query term: exactly one of text, image (base64), asset or path."""

    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    image: Annotated[str, Field(min_length=1, description="base64-encoded image bytes")] | None = (
        None
    )
    asset: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    weight: Weight = 1.0

    @model_validator(mode="after")
    def _exactly_one(self) -> TermIn:
        given = [k for k in ("text", "image", "asset", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("each term needs exactly one of text, image, asset or path")
        if self.weight == 0:
            raise ValueError("a term's weight must not be 0")
        return self


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: Annotated[str, Field(max_length=4096)] | None = None
    formats: Annotated[list[Annotated[str, Field(max_length=16)]], Field(max_length=20)] = []
    min_width: Annotated[int, Field(ge=0)] | None = None
    min_height: Annotated[int, Field(ge=0)] | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None


class SearchIn(BaseModel):
    """A query as text (``beach +sunset -people``) or as a list of weighted terms."""

    model_config = ConfigDict(extra="forbid")
    query: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    terms: Annotated[list[TermIn], Field(min_length=1, max_length=16)] | None = None
    limit: Annotated[int, Field(ge=1)] = 10
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0
    filters: FiltersIn = FiltersIn()
    min_score: Annotated[float, Field(ge=-1, le=1)] | None = None
    adaptive_cutoff: bool = False
    collapse_duplicates: Annotated[float, Field(gt=0, le=1)] | None = None

    @model_validator(mode="after")
    def _query_or_terms(self) -> SearchIn:
        if (self.query is None) == (self.terms is None):
            raise ValueError("give either query or terms")
        return self


class HitOut(BaseModel):
    id: str
    score: float
    path: str | None
    width: int | None
    height: int | None
    format: str | None
    taken_at: str | None


class SearchOut(BaseModel):
    hits: list[HitOut]
    limit: int
    offset: int
    model: str


class AssetOut(BaseModel):
    id: str
    paths: list[str]
    format: str | None
    width: int | None
    height: int | None
    taken_at: str | None
    bytes: int
    sha256: str
    state: str | None


class ClassifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(
        min_length=1, max_length=1000
    )]  # fmt: skip
    asset: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    image: Annotated[str, Field(min_length=1, description="base64 image bytes")] | None = None
    templates: Annotated[list[Annotated[str, Field(max_length=200)]], Field(
        min_length=1, max_length=32
    )] | None = None  # fmt: skip

    @model_validator(mode="after")
    def _image_or_asset(self) -> ClassifyIn:
        if (self.asset is None) == (self.image is None):
            raise ValueError("give either asset or image")
        return self


class LabelOut(BaseModel):
    label: str
    probability: float
    score: float


class ClassifyOut(BaseModel):
    labels: list[LabelOut]
    model: str


class TextSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    texts: Annotated[list[Annotated[str, Field(max_length=1000)]], Field(
        min_length=1, max_length=100_000
    )]  # fmt: skip


class TextSetOut(BaseModel):
    name: str
    count: int


class TextSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    asset: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    image: Annotated[str, Field(min_length=1, description="base64 image bytes")] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 5

    @model_validator(mode="after")
    def _image_or_asset(self) -> TextSearchIn:
        if (self.asset is None) == (self.image is None):
            raise ValueError("give either asset or image")
        return self


class TextHitOut(BaseModel):
    text: str
    score: float


class ErrorOut(BaseModel):
    detail: str


class HealthOut(BaseModel):
    status: Literal["ok", "not ready"]
    detail: str | None = None
