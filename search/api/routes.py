"""The /v1 endpoints. Handlers are sync (``def``): search is CPU-bound, so Starlette runs them
in its thread pool."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from core.catalog.index_versions import identity_of
from core.runtime import NoIndexYet
from core.store.base import SearchFilter
from search.api.metrics import render
from search.api.schemas import (
    AssetOut,
    ClassifyIn,
    ClassifyOut,
    FiltersIn,
    FlatOptionsIn,
    HealthOut,
    HitOut,
    IndexOut,
    IndexVersionOut,
    LabelOut,
    SearchIn,
    SearchOut,
    TextHitOut,
    TextSearchIn,
    TextSetIn,
    TextSetOut,
)
from search.engine import LiveTarget, SearchPage, SearchService
from search.query import (
    MAX_QUERY_CHARS,
    BadQuery,
    SearchOptions,
    Term,
    default_limit,
    page_size,
    parse_terms,
    parse_where,
    path_term,
)
from search.texts import add_texts, list_text_sets

STATIC = Path(__file__).resolve().parents[1] / "static"
# One router per scope: the entry layer's app factory puts them behind the read and write keys.
read_router = APIRouter()
write_router = APIRouter()
ops_router = APIRouter()  # probes, metrics and the page: no key


def _service(request: Request) -> SearchService:
    service: SearchService = request.app.state.service
    return service


def _model(request: Request) -> str:
    return str(request.app.state.runtime.model_label())


def _decode_b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadQuery("image must be base64-encoded bytes") from error


def _filters(body: FiltersIn) -> SearchFilter:
    return SearchFilter(
        folder=body.folder,
        formats=tuple(body.formats),  # the engine upper-cases them
        min_width=body.min_width,
        min_height=body.min_height,
        taken_after=body.taken_after,
        taken_before=body.taken_before,
        max_width=body.max_width,
        max_height=body.max_height,
        orientation=body.orientation,
        min_bytes=body.min_bytes,
        max_bytes=body.max_bytes,
        camera_make=body.camera_make,
        camera_model=body.camera_model,
        metadata=body.metadata_pairs(),
    )


INDEX_HEADER = "X-Clipdex-Index"


def _out(
    page: SearchPage, options: SearchOptions, target: LiveTarget, response: Response
) -> SearchOut:
    """A page of hits, naming the index version (and its model) that answered it."""
    version = target.version
    response.headers[INDEX_HEADER] = str(version.id)
    return SearchOut(
        hits=[HitOut(**hit.as_dict()) for hit in page.hits],
        limit=page_size(options),
        offset=options.offset,
        has_more=page.has_more,
        total=page.total,
        model=identity_of(version).label,
        index=IndexOut(id=version.id, collection=version.collection),
    )


def _terms(request: Request, body: SearchIn) -> list[Term]:
    if body.query is not None:
        return parse_terms(body.query)
    roots = request.app.state.settings.allowed_image_roots
    terms: list[Term] = []
    for term in body.terms or []:
        if term.text is not None:
            terms.append(Term("text", term.text, term.weight))
        elif term.image is not None:
            terms.append(Term("image", _decode_b64(term.image), term.weight))
        elif term.asset is not None:
            terms.append(Term("asset", term.asset, term.weight))
        elif term.path is not None:
            terms.append(Term("path", str(path_term(term.path, roots)), term.weight))
    return terms


def _limit(request: Request, limit: int | None) -> int:
    """The query's limit; none given is 10, or the server's maximum if that is less."""
    return (
        limit if limit is not None else default_limit(request.app.state.settings.search_max_limit)
    )


# The names a flat query string or form may hold besides the options (FlatOptionsIn).
FLAT_FIELDS = frozenset(FlatOptionsIn.model_fields)


def _refuse_unknown(where: str, names: list[str], known: frozenset[str]) -> None:
    """A misspelt option (``fromat``, ``colapse``) is a 422 naming it, never a silent drop."""
    extra = "Extra inputs are not permitted"
    unknown = [name for name in dict.fromkeys(names) if name not in known]
    if unknown:
        raise RequestValidationError(
            [{"type": "extra_forbidden", "loc": (where, name), "msg": extra} for name in unknown]
        )


def _known_query(*extra: str) -> params.Depends:
    known = FLAT_FIELDS | frozenset(extra)

    def check(request: Request) -> None:
        _refuse_unknown("query", list(request.query_params.keys()), known)

    dependency: params.Depends = Depends(check)
    return dependency


async def _known_form(request: Request) -> None:
    """The image search's form: options and ``file``; its query string: nothing (the options
    go in the form, and a query parameter would be ignored)."""
    _refuse_unknown("query", list(request.query_params.keys()), frozenset())
    form = await request.form()  # already read for the route's own fields: Starlette keeps it
    _refuse_unknown("body", list(form.keys()), FLAT_FIELDS | {"file"})


def _flat_options(request: Request, flat: FlatOptionsIn) -> SearchOptions:
    """The query-string / form-field shape; the same options as a ``SearchIn`` body."""
    filters = FiltersIn(
        folder=flat.folder, formats=flat.format, min_width=flat.min_width,
        min_height=flat.min_height, taken_after=flat.taken_after, taken_before=flat.taken_before,
        max_width=flat.max_width, max_height=flat.max_height, orientation=flat.orientation,
        min_bytes=flat.min_bytes, max_bytes=flat.max_bytes, camera_make=flat.camera_make,
        camera_model=flat.camera_model, metadata=_where(flat.where),
    )  # fmt: skip
    return SearchOptions(
        limit=_limit(request, flat.limit), offset=flat.offset, filters=_filters(filters),
        min_score=flat.min_score, adaptive_cutoff=flat.cutoff, collapse_duplicates=flat.collapse,
        mode=flat.mode, keyword_weight=flat.keyword_weight, sort=flat.sort,
    )  # fmt: skip


def _where(pairs: list[str]) -> dict[str, str | bool | int | float]:
    """``where=key=value`` pairs; a key given twice is refused, not silently collapsed."""
    found = [parse_where(pair) for pair in pairs]
    if len({key for key, _ in found}) < len(found):
        raise BadQuery("a metadata key may appear once in a query's filters")
    return dict(found)


def _options(request: Request, body: SearchIn) -> SearchOptions:
    return SearchOptions(
        limit=_limit(request, body.limit),
        offset=body.offset,
        filters=_filters(body.filters),
        min_score=body.min_score,
        adaptive_cutoff=body.adaptive_cutoff,
        collapse_duplicates=body.collapse_duplicates,
        mode=body.mode,
        keyword_weight=body.keyword_weight,
        sort=body.sort,
    )


@read_router.post("/v1/search", response_model=SearchOut, tags=["search"])
def search_post(request: Request, response: Response, body: SearchIn) -> SearchOut:
    """Text, image, asset and mixed weighted queries, with negatives; ``mode`` keyword or
    hybrid adds the words of the text terms (names, folders, metadata, tags, EXIF text)."""
    options = _options(request, body)
    service = _service(request)
    target = service.target()
    page = service.search_page(_terms(request, body), options, target)
    return _out(page, options, target, response)


@read_router.get(
    "/v1/search", response_model=SearchOut, tags=["search"], dependencies=[_known_query("q")]
)
def search_get(
    request: Request,
    response: Response,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="a +b -c")],
    flat: Annotated[FlatOptionsIn, Query()],
) -> SearchOut:
    """A text query (``beach +sunset -people``) with every option as a query parameter."""
    options = _flat_options(request, flat)
    service = _service(request)
    target = service.target()
    return _out(service.text_page(q, options, target), options, target, response)


@read_router.post(
    "/v1/search/image", response_model=SearchOut, tags=["search"],
    dependencies=[Depends(_known_form)],
)  # fmt: skip
def search_image(
    request: Request,
    response: Response,
    file: Annotated[UploadFile, File(description="the query image")],
    flat: Annotated[FlatOptionsIn, Form()],
) -> SearchOut:
    """Search with an uploaded image; every option as a form field, named as in GET /v1/search."""
    options = _flat_options(request, flat)
    data = file.file.read()
    service = _service(request)
    target = service.target()
    return _out(service.image_page(data, options, target), options, target, response)


@read_router.get("/v1/assets/{asset_id}", response_model=AssetOut, tags=["assets"])
def get_asset(request: Request, asset_id: str) -> AssetOut:
    return AssetOut(**_service(request).asset(asset_id).as_dict())


@read_router.get(
    "/v1/assets/{asset_id}/similar", response_model=SearchOut, tags=["assets"],
    dependencies=[_known_query()],
)  # fmt: skip
def similar(
    request: Request,
    response: Response,
    asset_id: str,
    flat: Annotated[FlatOptionsIn, Query()],
) -> SearchOut:
    """More like this; every option as a query parameter, named as in GET /v1/search."""
    options = _flat_options(request, flat)
    service = _service(request)
    target = service.target()
    return _out(service.similar_page(asset_id, options, target), options, target, response)


@read_router.get("/v1/index", response_model=IndexVersionOut, tags=["index"])
def live_index(request: Request) -> IndexVersionOut:
    """The index version this server answers from now (it follows activations)."""
    version = _service(request).target().version
    return IndexVersionOut(
        id=version.id, collection=version.collection, architecture=version.architecture,
        pretrained=version.pretrained, dim=version.dim, state=version.state,
        model=identity_of(version).label,
    )  # fmt: skip


@read_router.post("/v1/classify", response_model=ClassifyOut, tags=["classify"])
def classify(request: Request, body: ClassifyIn) -> ClassifyOut:
    """Zero-shot classification against labels, with prompt templates ("a photo of a {}.")."""
    image = _decode_b64(body.image) if body.image is not None else None
    scores = _service(request).classify(
        body.labels, image=image, asset_id=body.asset, templates=body.templates
    )
    return ClassifyOut(
        labels=[LabelOut(label=s.label, probability=s.probability, score=s.score) for s in scores],
        model=_model(request),
    )


@read_router.get("/v1/texts", response_model=list[TextSetOut], tags=["texts"])
def text_sets(request: Request) -> list[TextSetOut]:
    sets = list_text_sets(request.app.state.runtime)
    return [TextSetOut(name=s.name, count=s.count) for s in sets]


@write_router.post("/v1/texts", response_model=TextSetOut, tags=["texts"])
def add_text_set(request: Request, body: TextSetIn) -> TextSetOut:
    """Add texts (captions, a label list) to a named set, for image -> text search."""
    info = add_texts(request.app.state.runtime, body.name, body.texts)
    return TextSetOut(name=info.name, count=info.count)


@read_router.post("/v1/texts/{name}/search", response_model=list[TextHitOut], tags=["texts"])
def search_texts(request: Request, name: str, body: TextSearchIn) -> list[TextHitOut]:
    """Image -> text: the texts of a set that best describe an image."""
    image = _decode_b64(body.image) if body.image is not None else None
    hits = _service(request).texts_for_image(
        name, image=image, asset_id=body.asset, limit=body.limit
    )
    return [TextHitOut(text=h.text, score=h.score) for h in hits]


@ops_router.get("/healthz", response_model=HealthOut, tags=["ops"])
def healthz() -> HealthOut:
    return HealthOut(status="ok")


@ops_router.get(
    "/readyz", response_model=HealthOut, tags=["ops"], responses={503: {"model": HealthOut}}
)
def readyz(request: Request) -> HealthOut | JSONResponse:
    try:
        _, index = request.app.state.runtime.existing_index()
        index.count()
    except NoIndexYet:  # an empty library is served (no hits) and takes uploads: ready
        return HealthOut(status="ok", detail="nothing has been ingested yet")
    except Exception as error:  # readiness reports, it never raises
        explain = getattr(request.app.state, "explain", str)
        body = HealthOut(status="not ready", detail=explain(error))
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthOut(status="ok")


@ops_router.get("/metrics", tags=["ops"], response_class=Response)
def metrics(request: Request) -> Response:
    return Response(render(request.app.state.registry), media_type="text/plain; version=0.0.4")


@ops_router.get("/", include_in_schema=False, response_class=HTMLResponse)
def page() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))
