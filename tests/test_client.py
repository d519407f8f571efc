"""The Python client against a real server: same names and results as the in-process API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.runtime import Runtime
from core.settings import Settings
from core.store.base import SearchFilter
from ingest.run import ingest
from search.api.schemas import FiltersIn, FlatOptionsIn, SearchIn
from search.client import FLAT_NAMES, ClipdexClient, ClipdexError, wire_options
from search.engine import SearchService
from search.query import MAX_OFFSET, BadQuery, SearchOptions, Term
from tests.fakes import FakeEncoder
from tests.server import serve

pytestmark = pytest.mark.unit


def _add_pngs(library: Path) -> None:
    """A PNG copy of every photo (same pixels: a near-duplicate of the JPEG), every third one
    small, each taken in a different year (the JPEGs carry no date), in both folders: format,
    size, date and folder filters all have something to tell apart."""
    for index, source in enumerate(sorted(library.rglob("*.jpg"))):
        with Image.open(source) as image:
            copy = image.convert("RGB")
        if index % 3 == 2:
            copy = copy.resize((copy.width // 4, copy.height // 4))
        exif = Image.Exif()
        exif[0x8769] = {0x9003: f"{2016 + index}:06:01 12:00:00"}  # Exif IFD: DateTimeOriginal
        copy.save(source.with_name(f"{source.stem}-copy.png"), "PNG", exif=exif)


@pytest.fixture
def served(runtime: Runtime, library: Path) -> Iterator[tuple[str, SearchService]]:
    _add_pngs(library)
    ingest(runtime, [library])
    with serve(create_app(runtime.settings, runtime)) as url:
        yield url, SearchService(runtime)


def test_client_matches_the_in_process_api(
    served: tuple[str, SearchService], library: Path
) -> None:
    url, local = served
    photo = sorted(library.rglob("*.jpg"))[1]
    options = SearchOptions(limit=4, offset=1)
    with ClipdexClient(url, timeout=10) as remote:
        assert remote.text("beach +sunset -people", options) == local.text(
            "beach +sunset -people", options
        )
        assert remote.image(photo, options) == local.image(photo, options)
        terms = [Term("text", "boats"), Term("text", "people", -0.3)]
        assert remote.search(terms, options) == local.search(terms, options)
        first = remote.text("x", SearchOptions(limit=1))[0].id
        assert remote.similar(first, options) == local.similar(first, options)
        assert remote.asset(first) == local.asset(first)
        assert remote.classify(["a", "b"], asset_id=first) == local.classify(
            ["a", "b"], asset_id=first
        )
        remote.add_texts("labels", ["red", "blue"])
        assert [s.name for s in remote.text_sets()] == ["labels"]
        assert remote.texts_for_image("labels", image=photo) == local.texts_for_image(
            "labels", image=photo
        )
        assert remote.thumbnail(first, size=32)[:2] == b"\xff\xd8"


def _filtered(library: Path) -> SearchOptions:
    return SearchOptions(
        limit=5,
        filters=SearchFilter(
            folder=str(library.resolve() / "trips"), formats=("PNG",), min_width=200
        ),
        min_score=-0.9,
    )


REFINED = SearchOptions(limit=4, adaptive_cutoff=True, collapse_duplicates=0.9, min_score=-0.9)


def _everything(library: Path) -> SearchOptions:
    """Every filter and refinement at once, on the second page."""
    return SearchOptions(
        limit=3, min_score=-0.5, adaptive_cutoff=True, collapse_duplicates=0.9,
        filters=SearchFilter(
            folder=str(library.resolve()), formats=("png", "GIF"), min_width=200, min_height=100,
            taken_after=datetime(2017, 1, 1), taken_before=datetime(2022, 1, 1, tzinfo=UTC),
        ),
    )  # fmt: skip


def test_client_sends_every_option_on_every_query_kind(
    served: tuple[str, SearchService], library: Path
) -> None:
    """Text, mixed terms, image and similar, with filters and refinements: the same hits over
    HTTP as in process, and the filters really apply (PNG only, in trips/, wide enough)."""
    url, local = served
    photo = sorted((library / "trips").glob("*.jpg"))[0]
    first = local.image(photo, SearchOptions(limit=1))[0].id
    terms = [Term("text", "boats"), Term("text", "people", -0.3)]
    png = SearchOptions(
        limit=3, offset=1, filters=SearchFilter(formats=("png",)), collapse_duplicates=0.9
    )
    with ClipdexClient(url, timeout=10) as remote:
        for options in (_filtered(library), REFINED, png, _everything(library)):
            kinds = {
                "text": (remote.text("beach -snow", options), local.text("beach -snow", options)),
                "terms": (remote.search(terms, options), local.search(terms, options)),
                "image": (remote.image(photo, options), local.image(photo, options)),
                "similar": (remote.similar(first, options), local.similar(first, options)),
            }  # fmt: skip
            for kind, (over_http, in_process) in kinds.items():
                assert over_http == in_process, (kind, options)
        trips = str(library.resolve() / "trips")
        for kind in ("text", "terms", "image", "similar"):
            hits = {
                "text": lambda o: remote.text("beach", o),
                "terms": lambda o: remote.search(terms, o),
                "image": lambda o: remote.image(photo, o),
                "similar": lambda o: remote.similar(first, o),
            }[kind](_filtered(library))
            assert hits, kind
            for hit in hits:
                assert hit.taken_at is not None, (kind, hit)
                assert hit.format == "PNG" and hit.path is not None, (kind, hit)
                assert hit.path.startswith(trips + "/") and (hit.width or 0) >= 200, (kind, hit)
        # the same picture as a PNG scores 1.0; the cutoff keeps it, the JPEG itself is one hit
        refined = remote.image(photo, REFINED)
        assert refined and refined[0].score > 0.99
        assert len(refined) < len(remote.image(photo, SearchOptions(limit=4)))


def test_a_png_only_image_search_returns_no_jpegs(
    served: tuple[str, SearchService], library: Path
) -> None:
    """The regression: the client used to drop ``formats`` on image search."""
    url, local = served
    png_only = SearchOptions(limit=20, filters=SearchFilter(formats=("PNG",)))
    photo = sorted(library.rglob("*.jpg"))[0]
    with ClipdexClient(url, timeout=10) as remote:
        hits = remote.image(photo, png_only)
        assert hits == local.image(photo, png_only)
        assert len(hits) == len(list(library.rglob("*.png"))) == 8
        assert {hit.format for hit in hits} == {"PNG"}
        assert hits[0].path == str(photo.resolve().with_name(f"{photo.stem}-copy.png"))
        assert any(h.format == "JPEG" for h in remote.image(photo, SearchOptions(limit=20)))


def test_every_option_has_a_name_on_every_wire() -> None:
    """No silent drops: each SearchOptions/SearchFilter field is sent in every shape, and the
    server reads each name it is sent under."""
    options = {f.name for f in fields(SearchOptions)} - {"filters"}
    filters = {f.name for f in fields(SearchFilter)}
    assert set(FLAT_NAMES) == options | filters
    assert set(FLAT_NAMES.values()) == set(FlatOptionsIn.model_fields)
    full = SearchOptions(
        limit=3, offset=2, min_score=0.1, adaptive_cutoff=True, collapse_duplicates=0.9,
        mode="hybrid", keyword_weight=0.3, sort="-taken_at",
        filters=SearchFilter(
            folder="/a", formats=("PNG", "GIF"), min_width=1, min_height=2,
            taken_after=datetime(2020, 1, 1, tzinfo=UTC), taken_before=datetime(2021, 1, 1),
            max_width=9, max_height=8, orientation="portrait", min_bytes=10, max_bytes=20,
            camera_make="Canon", camera_model="EOS R5", metadata=(("album", "x=y"), ("tag", "a")),
        ),
    )  # fmt: skip
    body = wire_options(full, "json")
    assert set(body) == options | {"filters"} and set(body["filters"]) == filters
    assert set(body) <= set(SearchIn.model_fields) and filters == set(FiltersIn.model_fields)
    for shape in ("form", "query"):
        flat = wire_options(full, shape)
        assert set(flat) == set(FLAT_NAMES.values()), shape
        read = FlatOptionsIn.model_validate(flat)
        assert (read.format, read.cutoff, read.collapse) == (["PNG", "GIF"], True, 0.9)
        assert read.taken_after == full.filters.taken_after
        assert (read.where, read.mode, read.sort) == (["album=x=y", "tag=a"], "hybrid", "-taken_at")
    assert body["filters"]["metadata"] == {"album": "x=y", "tag": "a"}


def test_client_errors_are_clear(served: tuple[str, SearchService]) -> None:
    """422 with a message naming the option, on every query kind, and the same refusal in
    process (BadQuery)."""
    url, local = served
    with ClipdexClient(url, timeout=10) as remote:
        with pytest.raises(ClipdexError) as caught:
            remote.text("x", SearchOptions(limit=0))
        assert caught.value.status == 422
        with pytest.raises(ClipdexError, match="404"):
            remote.asset("00000000-0000-0000-0000-000000000000")
        first = remote.text("x", SearchOptions(limit=1))[0].id
        photo = Path(remote.asset(first).paths[0])
        kinds: list[Callable[[SearchOptions], object]] = [
            lambda o: remote.image(photo, o), lambda o: remote.similar(first, o),
            lambda o: remote.text("x", o), lambda o: local.image(photo, o),
        ]  # fmt: skip
        bad = {
            "collapse": SearchOptions(collapse_duplicates=0.0),
            "offset": SearchOptions(offset=MAX_OFFSET + 1),
            "min_score": SearchOptions(min_score=1.5),
            "min_width": SearchOptions(filters=SearchFilter(min_width=-1)),
            "format": SearchOptions(filters=SearchFilter(formats=("X" * 17,))),
        }
        for name, options in bad.items():
            for query in kinds:
                with pytest.raises((ClipdexError, BadQuery)) as refused:
                    query(options)
                assert getattr(refused.value, "status", 422) == 422, name
                assert name in str(refused.value), (name, str(refused.value))
        for odd in (float("nan"), float("inf")):  # no JSON carries them: never sent
            with pytest.raises(ClipdexError, match="cannot be sent as JSON") as unsendable:
                remote.text("x", SearchOptions(min_score=odd))
            assert unsendable.value.status == 422
        for dots in (".", ".."):  # /v1/texts/../search would be /v1/search
            with pytest.raises(ClipdexError, match="text set") as refused_name:
                remote.add_texts(dots, ["a dog"])
            assert refused_name.value.status == 422
            with pytest.raises(ClipdexError, match="no text set") as unknown:
                remote.texts_for_image(dots, asset_id=first)
            assert unknown.value.status == 404
    with (
        ClipdexClient("http://127.0.0.1:9", timeout=2) as nowhere,
        pytest.raises(ClipdexError, match="cannot reach"),
    ):
        nowhere.text("x")


def test_a_chunked_upload_over_the_limit_is_cut_off(settings: Settings) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 10_000})
    runtime = open_ready_runtime(small, encoder=FakeEncoder())

    def body() -> Iterator[bytes]:
        # A well-formed multipart upload of 10 MB, streamed without a Content-Length.
        yield (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n"
        )
        yield from (b"x" * 50_000 for _ in range(200))
        yield b"\r\n--b--\r\n"

    try:
        with serve(create_app(small, runtime)) as url:
            response = httpx.post(
                f"{url}/v1/search/image", content=body(), timeout=30,
                headers={"content-type": "multipart/form-data; boundary=b"},
            )  # fmt: skip
            assert response.status_code == 413
            assert "limit of 10000 bytes" in response.json()["detail"]
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        runtime.close()
