"""A Python client for the HTTP API, with the in-process ``SearchService`` method names.

client = ClipdexClient("http://127.0.0.1:8700", api_key="...")
hits = client.text("a dog on the beach", SearchOptions(limit=5))
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx

from search.query import BadQuery, SearchOptions, Term, vector_only
from search.results import AssetInfo, Hit, LabelScore, SearchPage, TextHit, TextSetInfo

WireShape = Literal["json", "form", "query"]
# The name of each SearchOptions / SearchFilter field in a query string or a form (the JSON
# body uses the field names themselves, with the filters nested under "filters").
FLAT_NAMES = {
    "limit": "limit",
    "offset": "offset",
    "min_score": "min_score",
    "adaptive_cutoff": "cutoff",
    "collapse_duplicates": "collapse",
    "folder": "folder",
    "formats": "format",
    "min_width": "min_width",
    "min_height": "min_height",
    "taken_after": "taken_after",
    "taken_before": "taken_before",
    "max_width": "max_width",
    "max_height": "max_height",
    "orientation": "orientation",
    "min_bytes": "min_bytes",
    "max_bytes": "max_bytes",
    "camera_make": "camera_make",
    "camera_model": "camera_model",
    "metadata": "where",
    "mode": "mode",
    "keyword_weight": "keyword_weight",
    "sort": "sort",
}


class ClipdexError(RuntimeError):
    """The server refused a request; ``status`` is the HTTP status, the message its detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class ClipdexClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> ClipdexClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the same names as SearchService -----------------------------------------------------

    def text(self, query: str, options: SearchOptions | None = None) -> list[Hit]:
        return self.text_page(query, options).hits

    def search(self, terms: Sequence[Term], options: SearchOptions | None = None) -> list[Hit]:
        return self.search_page(terms, options).hits

    def image(self, image: Path | bytes, options: SearchOptions | None = None) -> list[Hit]:
        return self.image_page(image, options).hits

    def similar(self, asset_id: str, options: SearchOptions | None = None) -> list[Hit]:
        return self.similar_page(asset_id, options).hits

    def text_page(self, query: str, options: SearchOptions | None = None) -> SearchPage:
        return self._search({"query": query}, options)

    def search_page(
        self, terms: Sequence[Term], options: SearchOptions | None = None
    ) -> SearchPage:
        return self._search({"terms": [_term(t) for t in terms]}, options)

    def image_page(self, image: Path | bytes, options: SearchOptions | None = None) -> SearchPage:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        form = wire_options(options or SearchOptions(), "form")
        body = self._call("POST", "/v1/search/image", data=form, files={"file": ("query", data)})
        return _page(body)

    def similar_page(self, asset_id: str, options: SearchOptions | None = None) -> SearchPage:
        try:  # checked before the id, as the server checks it
            vector_only(options or SearchOptions(), "more like this")
        except BadQuery as error:
            raise ClipdexError(422, str(error)) from None
        params = wire_options(options or SearchOptions(), "query")
        return _page(self._call("GET", f"{_asset_url(asset_id)}/similar", params=params))

    def asset(self, asset_id: str) -> AssetInfo:
        return AssetInfo(**self._call("GET", _asset_url(asset_id)))

    def classify(
        self, labels: Sequence[str], image: Path | bytes | None = None,
        asset_id: str | None = None, templates: Sequence[str] | None = None,
    ) -> list[LabelScore]:  # fmt: skip
        body: dict[str, Any] = {"labels": list(labels), **_image_or_asset(image, asset_id)}
        if templates is not None:
            body["templates"] = list(templates)
        answer = self._call("POST", "/v1/classify", json=body)
        return [LabelScore(**row) for row in answer["labels"]]

    def texts_for_image(
        self, set_name: str, image: Path | bytes | None = None, asset_id: str | None = None,
        limit: int = 5,
    ) -> list[TextHit]:  # fmt: skip
        body = {"limit": limit, **_image_or_asset(image, asset_id)}
        if not set_name.strip(".") or "/" in set_name:  # no set has such a name
            raise ClipdexError(404, f"no text set named {set_name!r}")
        url = f"/v1/texts/{quote(set_name, safe='')}/search"
        return [TextHit(**row) for row in self._call("POST", url, json=body)]

    def add_texts(self, name: str, texts: Sequence[str]) -> TextSetInfo:
        return TextSetInfo(
            **self._call("POST", "/v1/texts", json={"name": name, "texts": list(texts)})
        )

    def text_sets(self) -> list[TextSetInfo]:
        return [TextSetInfo(**row) for row in self._call("GET", "/v1/texts")]

    def thumbnail(self, asset_id: str, size: int = 256) -> bytes:
        url = f"{_asset_url(asset_id)}/thumbnail"
        response = self._request("GET", url, params={"size": size})
        return response.content

    # -- plumbing ---------------------------------------------------------------------------

    def _search(self, query: dict[str, Any], options: SearchOptions | None) -> SearchPage:
        body = {**query, **wire_options(options or SearchOptions(), "json")}
        return _page(self._call("POST", "/v1/search", json=body))

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._request(method, url, **kwargs).json()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except ValueError as error:  # a body JSON cannot carry (NaN, infinity): never sent
            raise ClipdexError(422, f"the request cannot be sent as JSON: {error}") from error
        except httpx.TimeoutException as error:
            raise ClipdexError(408, f"no answer from {self._http.base_url} in time") from error
        except httpx.TransportError as error:
            raise ClipdexError(503, f"cannot reach {self._http.base_url}: {error}") from error
        if response.is_error:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ClipdexError(response.status_code, str(detail))
        return response


def _asset_url(asset_id: str) -> str:
    """The URL of an asset, its id percent-encoded (``?`` or ``#`` in it stay part of it). An
    id that no URL path segment can carry (empty, a ``/``, a dot segment) names no asset: the
    404 the server gives any id that is not a UUID, said here, as ``SearchService`` says it."""
    if not asset_id or "/" in asset_id or asset_id in (".", ".."):
        raise ClipdexError(404, f"no asset with id {asset_id[:64]!r} (asset ids are UUIDs)")
    return f"/v1/assets/{quote(asset_id, safe='')}"


def wire_options(options: SearchOptions, shape: WireShape) -> dict[str, Any]:
    """``options`` as the server reads them: a ``SearchIn`` JSON body (filters nested), or the
    flat fields of a query string or a multipart form (names from ``FLAT_NAMES``, several
    ``format`` values, ``None`` left out). Every field is sent: a field with no wire name is a
    KeyError here, never a silent drop."""
    top = {f.name: getattr(options, f.name) for f in fields(options) if f.name != "filters"}
    filters = {f.name: getattr(options.filters, f.name) for f in fields(options.filters)}
    pairs = filters.pop("metadata")
    if shape == "json":
        return {
            **{name: _json_value(value) for name, value in top.items()},
            "filters": {
                **{name: _json_value(value) for name, value in filters.items()},
                "metadata": dict(pairs),
            },
        }
    flat = {FLAT_NAMES[name]: value for name, value in (*top.items(), *filters.items())}
    flat[FLAT_NAMES["metadata"]] = [f"{key}={value}" for key, value in pairs]
    return {name: _flat_value(value) for name, value in flat.items() if value is not None}


def _page(body: dict[str, Any]) -> SearchPage:
    hits = [Hit(**hit) for hit in body["hits"]]
    return SearchPage(hits, has_more=body["has_more"], total=body["total"])


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return list(value) if isinstance(value, tuple) else value


def _flat_value(value: Any) -> str | list[str]:
    """Query strings and form fields are text; pydantic on the server parses them back."""
    if isinstance(value, tuple | list):
        return [str(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _term(term: Term) -> dict[str, Any]:
    if term.kind == "image":
        value: Any = base64.b64encode(term.value if isinstance(term.value, bytes) else b"").decode()
    else:
        value = term.value
    return {term.kind: value, "weight": term.weight}


def _image_or_asset(image: Path | bytes | None, asset_id: str | None) -> dict[str, str]:
    if asset_id is not None:
        return {"asset": asset_id}
    if image is None:
        return {}
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return {"image": base64.b64encode(data).decode()}
