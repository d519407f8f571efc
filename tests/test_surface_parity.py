"""One table of queries (every filter, refinement, mode and sort; text, image, mixed terms and
"more like this") through all four surfaces: the in-process ``SearchService``, the CLI
(``--json``), the HTTP API (TestClient) and ``ClipdexClient`` against a real uvicorn server.
Each must answer the same ids in the same order. The CLI's flags are derived from the
``SearchOptions`` fields themselves, so an option the CLI lacks fails here."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from clipdex.catalog import open_ready_runtime
from clipdex.cli import command
from clipdex.http import create_app
from core.settings import Settings
from core.store.base import SearchFilter
from ingest.run import ingest
from search.client import ClipdexClient, wire_options
from search.engine import SearchService
from search.query import SearchOptions, Term, parse_terms
from tests.conftest import cli_env
from tests.searchkit import NAMED, asset_id_of, enrich, set_meta
from tests.server import serve

pytestmark = pytest.mark.unit

WORDS = "a photo of boats"
CLI_NAMES = {  # SearchOptions / SearchFilter field -> CLI flag, where not --field-name
    "formats": "--format", "adaptive_cutoff": "--cutoff", "collapse_duplicates": "--collapse",
    "metadata": "--where",
}  # fmt: skip


@dataclass(frozen=True)
class Row:
    label: str
    kind: str  # text, image, terms, similar
    options: SearchOptions
    words: str = WORDS
    dash: bool = False  # the CLI gets the words after --, as positional arguments


def _rows(library: Path) -> list[Row]:
    def f(**filters: Any) -> SearchOptions:
        return SearchOptions(limit=20, filters=SearchFilter(**filters))

    def o(**options: Any) -> SearchOptions:
        return SearchOptions(**{"limit": 20, **options})

    trips = str((library / "trips").resolve())
    return [
        Row("plain", "text", o()),
        Row("page", "text", o(limit=3, offset=2)),
        Row("folder", "text", f(folder=trips)),
        Row("format", "text", f(formats=("PNG",))),
        Row("width", "text", f(min_width=200, max_width=600)),
        Row("height", "text", f(min_height=100, max_height=400)),
        Row("orientation", "text", f(orientation="portrait")),
        Row("bytes", "text", f(min_bytes=20_000, max_bytes=300_000)),
        Row("camera make", "text", f(camera_make="Canon")),
        Row("camera model", "text", f(camera_model="D750")),
        Row("metadata", "text", f(metadata=(("album", "summer"),))),
        Row(
            "taken", "text", f(taken_after=datetime(2017, 1, 1), taken_before=datetime(2022, 1, 1))
        ),
        Row("min score", "text", o(min_score=-0.5)),
        Row("cutoff", "text", o(adaptive_cutoff=True)),
        Row("collapse", "text", o(collapse_duplicates=0.95)),
        Row("keyword", "text", o(mode="keyword"), words="zanzibar trips"),
        Row("hybrid", "text", o(mode="hybrid", keyword_weight=0.7), words="zanzibar boats"),
        Row("leading -", "text", o(mode="keyword"), words="-people +zanzibar", dash=True),
        Row("sort", "text", o(sort="taken_at")),
        Row("sort cutoff", "text", o(sort="-taken_at", adaptive_cutoff=True)),
        Row("image", "image", f(orientation="landscape")),
        Row("image refined", "image", o(collapse_duplicates=0.9, sort="-taken_at")),
        Row("terms", "terms", f(folder=trips)),
        Row("terms hybrid", "terms", o(mode="hybrid", sort="taken_at"), words="zanzibar"),
        Row(
            "similar",
            "similar",
            SearchOptions(limit=4, offset=1, filters=SearchFilter(camera_make="Hasselblad")),
        ),
        Row(
            "similar cutoff",
            "similar",
            SearchOptions(limit=20, adaptive_cutoff=True, filters=SearchFilter(max_bytes=10**7)),
        ),
    ]


def _cli_flags(options: SearchOptions) -> list[str]:
    plain, no_filter = SearchOptions(), SearchFilter()
    pairs = [(f.name, getattr(options, f.name), getattr(plain, f.name)) for f in fields(options)]
    pairs += [
        (f.name, getattr(options.filters, f.name), getattr(no_filter, f.name))
        for f in fields(options.filters)
    ]
    flags: list[str] = []
    for name, value, default in pairs:
        if name == "filters" or value == default:
            continue
        flag = CLI_NAMES.get(name, "--" + name.replace("_", "-"))
        if value is True:
            flags.append(flag)
        elif isinstance(value, tuple):
            for item in value:
                flags += [flag, "=".join(item) if isinstance(item, tuple) else str(item)]
        else:
            flags += [flag, value.isoformat() if isinstance(value, datetime) else str(value)]
    return flags


@dataclass(frozen=True)
class Library:
    root: Path
    photo: Path  # the image of image and mixed queries
    asset: str  # the start of "more like this"


@pytest.fixture
def prepared(settings: Settings, library: Path) -> Library:
    enrich(library)
    runtime = open_ready_runtime(settings)  # the real tiny model, as the CLI loads it
    try:
        ingest(runtime, [library])
        pngs = sorted(library.rglob("*.png"))
        set_meta(runtime, pngs[0], {"album": "summer"})
        set_meta(runtime, pngs[2], {"album": "summer", "tags": ["boat"]})
        photo = pngs[1]
        asset = asset_id_of(runtime, next(library.rglob(NAMED)))
    finally:
        runtime.close()
    return Library(library, photo, asset)


def _cli(settings: Settings, row: Row, lib: Library) -> list[str]:
    args = ["similar", lib.asset] if row.kind == "similar" else ["search"]
    if row.kind in ("image", "terms"):
        args += ["--image", str(lib.photo)] + (["--weight", "2"] if row.kind == "terms" else [])
    args += [*_cli_flags(row.options), "--json"]
    if row.kind in ("text", "terms"):
        args += ["--", *row.words.split()] if row.dash else ["--query", row.words]
    result = CliRunner().invoke(command(), args, env=cli_env(settings.home))
    assert result.exit_code == 0, (row.label, result.output)
    return [hit["id"] for hit in json.loads(result.stdout)]


def _terms(row: Row, lib: Library) -> list[Term]:
    return [*parse_terms(row.words), Term("image", lib.photo.read_bytes(), 2.0)]


def _python(service: SearchService, row: Row, lib: Library) -> list[str]:
    hits = {
        "text": lambda: service.text(row.words, row.options),
        "image": lambda: service.image(lib.photo, row.options),
        "terms": lambda: service.search(_terms(row, lib), row.options),
        "similar": lambda: service.similar(lib.asset, row.options),
    }[row.kind]()
    return [hit.id for hit in hits]


def _http(http: TestClient, row: Row, lib: Library) -> list[str]:
    if row.kind == "text":
        response = http.get(
            "/v1/search", params={"q": row.words, **wire_options(row.options, "query")}
        )
    elif row.kind == "image":
        files = {"file": ("q.png", lib.photo.read_bytes())}
        response = http.post(
            "/v1/search/image", data=wire_options(row.options, "form"), files=files
        )
    elif row.kind == "similar":
        response = http.get(
            f"/v1/assets/{lib.asset}/similar", params=wire_options(row.options, "query")
        )
    else:
        image = base64.b64encode(lib.photo.read_bytes()).decode()
        terms = [{"text": t.value, "weight": t.weight} for t in parse_terms(row.words)]
        body = {
            "terms": [*terms, {"image": image, "weight": 2.0}],
            **wire_options(row.options, "json"),
        }
        response = http.post("/v1/search", json=body)
    assert response.status_code == 200, (row.label, response.text)
    return [hit["id"] for hit in response.json()["hits"]]


def _client(remote: ClipdexClient, row: Row, lib: Library) -> list[str]:
    hits = {
        "text": lambda: remote.text(row.words, row.options),
        "image": lambda: remote.image(lib.photo, row.options),
        "terms": lambda: remote.search(_terms(row, lib), row.options),
        "similar": lambda: remote.similar(lib.asset, row.options),
    }[row.kind]()
    return [hit.id for hit in hits]


@pytest.fixture
def answers(settings: Settings, prepared: Library) -> Iterator[dict[str, dict[str, list[str]]]]:
    rows = _rows(prepared.root)
    found: dict[str, dict[str, list[str]]] = {r.label: {} for r in rows}
    for row in rows:  # the CLI first: it opens the embedded store itself, one process at a time
        found[row.label]["cli"] = _cli(settings, row, prepared)
    runtime = open_ready_runtime(settings)
    try:
        service = SearchService(runtime)
        with (
            TestClient(create_app(settings, runtime)) as http,
            serve(create_app(settings, runtime)) as url,
            ClipdexClient(url, timeout=60) as remote,
        ):
            for row in rows:
                found[row.label]["python"] = _python(service, row, prepared)
                found[row.label]["http"] = _http(http, row, prepared)
                found[row.label]["client"] = _client(remote, row, prepared)
    finally:
        runtime.close()
    yield found


def test_every_query_answers_the_same_on_every_surface(
    answers: dict[str, dict[str, list[str]]],
) -> None:
    differing = {
        label: surfaces
        for label, surfaces in answers.items()
        if len({tuple(v) for v in surfaces.values()}) != 1
    }
    assert not differing, differing
    empty = [label for label, surfaces in answers.items() if not surfaces["python"]]
    assert not empty, f"a query that finds nothing proves nothing: {empty}"
    plain = answers["plain"]["python"]
    narrowed = [
        label
        for label in ("format", "orientation", "camera make", "metadata")
        if answers[label]["python"] != plain[: len(answers[label]["python"])]
    ]
    assert narrowed, "the filters must change the answers"
