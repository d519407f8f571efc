"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from search.engine import MAX_LABELS, MAX_TEMPLATES
from search.query import (
    COLLAPSE_CEILING,
    COLLAPSE_FLOOR,
    MAX_CAMERA_CHARS,
    MAX_FORMAT_CHARS,
    MAX_FORMATS,
    MAX_META_VALUE_CHARS,
    MAX_METADATA,
    MAX_OFFSET,
    MAX_PATH_CHARS,
    MAX_QUERY_CHARS,
    MAX_TERMS,
    MIN_SCORE_CEILING,
    MIN_SCORE_FLOOR,
    Mode,
    Sort,
)
from search.texts import MAX_TEXT_CHARS, MAX_TEXTS

Weight = Annotated[float, Field(ge=-100, le=100)]
# The bounds of SearchOptions (search.query), shared by the JSON bodies and the flat
# query-string / form-field shape below.
# The upper bound is a setting, which the engine checks; no limit is 10 or that maximum if less.
Limit = Annotated[int, Field(ge=1, description="default 10, or the server's maximum if less")]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]
Folder = Annotated[str, Field(max_length=MAX_PATH_CHARS)]
Formats = Annotated[
    list[Annotated[str, Field(max_length=MAX_FORMAT_CHARS)]], Field(max_length=MAX_FORMATS)
]
Size = Annotated[int, Field(ge=0)]
MinScore = Annotated[float, Field(ge=MIN_SCORE_FLOOR, le=MIN_SCORE_CEILING)]
Collapse = Annotated[
    float,
    Field(gt=COLLAPSE_FLOOR, le=COLLAPSE_CEILING, description="cosine above which hits are one"),
]
QueryText = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]
Bytes = Annotated[int, Field(ge=0, description="file size in bytes")]
Orientation = Literal["portrait", "landscape", "square"]
Camera = Annotated[str, Field(min_length=1, max_length=MAX_CAMERA_CHARS)]
KeywordWeight = Annotated[
    float, Field(ge=0, le=1, description="hybrid: the keyword side's share of the fused score")
]


class TermIn(BaseModel):
    """One weighted query term: exactly one of text, image (base64), asset or path."""

    model_config = ConfigDict(extra="forbid")
    text: QueryText | None = None
    # no min_length: an empty image is a non-image (415), as anywhere else
    image: Annotated[str, Field(description="base64-encoded image bytes")] | None = None
    asset: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    path: Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)] | None = None
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
    folder: Folder | None = None
    formats: Formats = []
    min_width: Size | None = None
    min_height: Size | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    max_width: Size | None = None
    max_height: Size | None = None
    orientation: Orientation | None = None
    min_bytes: Bytes | None = None
    max_bytes: Bytes | None = None
    camera_make: Camera | None = Field(default=None, description="EXIF make, exactly")
    camera_model: Camera | None = Field(default=None, description="EXIF model, exactly")
    metadata: Annotated[
        dict[
            str,
            Annotated[str, Field(min_length=1, max_length=MAX_META_VALUE_CHARS)]
            | StrictBool
            | StrictInt
            | StrictFloat,
        ],
        Field(
            max_length=MAX_METADATA,
            description="user metadata: key -> exact value; a number or boolean matches it as "
            "stored (2020 as '2020', true as 'true')",
        ),
    ] = {}

    def metadata_pairs(self) -> tuple[tuple[str, str], ...]:
        """The metadata filter as stored text, by key."""
        return tuple(sorted((key, _stored_text(value)) for key, value in self.metadata.items()))


class SearchIn(BaseModel):
    """A query as text (``beach +sunset -people``) or as a list of weighted terms."""

    model_config = ConfigDict(extra="forbid")
    query: QueryText | None = None
    terms: Annotated[list[TermIn], Field(min_length=1, max_length=MAX_TERMS)] | None = None
    limit: Limit | None = None
    offset: Offset = 0
    filters: FiltersIn = FiltersIn()
    min_score: MinScore | None = None
    adaptive_cutoff: bool = False
    collapse_duplicates: Collapse | None = None
    mode: Mode = "vector"
    keyword_weight: KeywordWeight = 0.5
    sort: Sort = "relevance"

    @model_validator(mode="after")
    def _query_or_terms(self) -> SearchIn:
        if (self.query is None) == (self.terms is None):
            raise ValueError("give either query or terms")
        return self


class FlatOptionsIn(BaseModel):
    """Every option of ``SearchIn`` as flat fields: the query string of ``GET /v1/search`` and
    ``GET /v1/assets/{id}/similar``, and the form fields of ``POST /v1/search/image``.

    Unknown names are refused by the routes (422 naming them), not here: the model shares the
    query string (or the form) with the route's other parameters (``q``, ``file``).
    """

    limit: Limit | None = None
    offset: Offset = 0
    folder: Folder | None = None
    format: Formats = []
    min_width: Size | None = None
    min_height: Size | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    max_width: Size | None = None
    max_height: Size | None = None
    orientation: Orientation | None = None
    min_bytes: Bytes | None = None
    max_bytes: Bytes | None = None
    camera_make: Camera | None = None
    camera_model: Camera | None = None
    where: Annotated[
        list[Annotated[str, Field(max_length=MAX_META_VALUE_CHARS + 70)]],
        Field(max_length=MAX_METADATA, description="user metadata filter, key=value"),
    ] = []
    min_score: MinScore | None = None
    cutoff: bool = Field(default=False, description="adaptive cutoff")
    collapse: Collapse | None = None
    mode: Mode = "vector"
    keyword_weight: KeywordWeight = 0.5
    sort: Sort = "relevance"


class HitOut(BaseModel):
    id: str
    score: float = Field(description="cosine in vector mode; IDF overlap or fused RRF score")
    path: str | None
    width: int | None
    height: int | None
    format: str | None
    taken_at: str | None
    name: str | None = None
    orientation: str | None = None
    bytes: int | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    description: str | None = None
    meta: dict[str, Any] | None = None


class IndexOut(BaseModel):
    """The index version that answered."""

    id: int
    collection: str


class IndexVersionOut(IndexOut):
    architecture: str
    pretrained: str
    dim: int
    state: str
    model: str


class SearchOut(BaseModel):
    hits: list[HitOut]
    limit: int
    offset: int
    has_more: bool = Field(description="a next page (offset + limit) has hits")
    total: int | None = Field(
        description="hits of the whole query, where known exactly and cheaply: null past about "
        "10,000 matches (unfiltered on the embedded store: always known) until the last page"
    )
    model: str
    index: IndexOut | None = None


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
    meta: dict[str, Any] | None = None  # the user's own metadata


class ClassifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(
        min_length=1, max_length=MAX_LABELS
    )]  # fmt: skip
    asset: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    image: Annotated[str, Field(description="base64 image bytes")] | None = None
    templates: Annotated[list[Annotated[str, Field(max_length=200)]], Field(
        min_length=1, max_length=MAX_TEMPLATES
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
    texts: Annotated[list[Annotated[str, Field(max_length=MAX_TEXT_CHARS)]], Field(
        min_length=1, max_length=MAX_TEXTS
    )]  # fmt: skip


class TextSetOut(BaseModel):
    name: str
    count: int


class TextSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    asset: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    image: Annotated[str, Field(description="base64 image bytes")] | None = None
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


def _stored_text(value: str | bool | int | float) -> str:
    """How metadata stores a value: text as it is, booleans as true/false, numbers as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
