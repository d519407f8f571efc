"""The Python client against a real server: same names and results as the in-process API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.runtime import Runtime
from core.settings import Settings
from ingest.run import ingest
from search.client import ClipdexClient, ClipdexError
from search.engine import SearchService
from search.query import SearchOptions, Term
from tests.fakes import FakeEncoder
from tests.server import serve

pytestmark = pytest.mark.unit


@pytest.fixture
def served(runtime: Runtime, library: Path) -> Iterator[tuple[str, SearchService]]:
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


def test_client_errors_are_clear(served: tuple[str, SearchService]) -> None:
    url, _ = served
    with ClipdexClient(url, timeout=10) as remote:
        with pytest.raises(ClipdexError) as caught:
            remote.text("x", SearchOptions(limit=0))
        assert caught.value.status == 422
        with pytest.raises(ClipdexError, match="404"):
            remote.asset("00000000-0000-0000-0000-000000000000")
    with (
        ClipdexClient("http://127.0.0.1:9", timeout=2) as nowhere,
        pytest.raises(ClipdexError, match="cannot reach"),
    ):
        nowhere.text("x")


def test_a_chunked_upload_over_the_limit_is_cut_off(settings: Settings) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 10_000})
    runtime = open_ready_runtime(small, encoder=FakeEncoder())

    def body() -> Iterator[bytes]:
        yield (
            b'--b\\r\\nContent-Disposition: form-data; name="file"; filename="big.jpg"\\r\\n'
            b"Content-Type: image/jpeg\\r\\n\\r\\n"
        )
        yield from (b"x" * 50_000 for _ in range(200))  # 10 MB, no Content-Length

    try:
        with serve(create_app(small, runtime)) as url:
            response = httpx.post(
                f"{url}/v1/search/image", content=body(), timeout=30,
                headers={"content-type": "multipart/form-data; boundary=b"},
            )  # fmt: skip
        assert response.status_code == 413
    finally:
        runtime.close()
