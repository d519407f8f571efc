"""The HTTP API as a client sees it: results, paging, errors, keys, limits."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.runtime import Runtime
from core.settings import Settings
from ingest.run import ingest
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


@pytest.fixture
def indexed(runtime: Runtime, library: Path) -> Runtime:
    ingest(runtime, [library])
    return runtime


@pytest.fixture
def client(indexed: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(indexed.settings, indexed)) as test_client:
        yield test_client


def jpeg_bytes(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def test_text_search_get_and_post_agree(client: TestClient) -> None:
    got = client.get("/v1/search", params={"q": "a dog", "limit": 5})
    posted = client.post("/v1/search", json={"query": "a dog", "limit": 5})
    assert got.status_code == posted.status_code == 200
    assert got.json()["hits"] == posted.json()["hits"]
    hit = got.json()["hits"][0]
    assert set(hit) == {
        "id", "score", "path", "width", "height", "format", "taken_at", "name", "orientation",
        "bytes", "camera_make", "camera_model", "description", "meta",
    }  # fmt: skip
    assert hit["name"] == hit["path"].rsplit("/", 1)[-1] and hit["meta"] == {}
    assert got.json()["has_more"] is True and got.json()["total"] is not None
    assert hit["format"] == "JPEG" and hit["width"] > 0


def test_paging_is_a_stable_split_of_the_ranking(client: TestClient) -> None:
    top = client.get("/v1/search", params={"q": "x", "limit": 6}).json()["hits"]
    first = client.get("/v1/search", params={"q": "x", "limit": 3}).json()["hits"]
    second = client.get("/v1/search", params={"q": "x", "limit": 3, "offset": 3}).json()["hits"]
    assert [h["id"] for h in first + second] == [h["id"] for h in top]


def test_image_upload_finds_the_same_picture_first(client: TestClient, library: Path) -> None:
    photo = sorted(library.rglob("*.jpg"))[2]
    response = client.post(
        "/v1/search/image", files={"file": ("q.jpg", photo.read_bytes())}, data={"limit": "3"}
    )
    assert response.status_code == 200
    assert response.json()["hits"][0]["path"] == str(photo)


def test_asset_similar_and_thumbnail(client: TestClient, library: Path) -> None:
    top = client.get("/v1/search", params={"q": "x", "limit": 1}).json()["hits"][0]
    asset = client.get(f"/v1/assets/{top['id']}").json()
    assert asset["paths"] == [top["path"]] and asset["state"] == "indexed"
    similar = client.get(f"/v1/assets/{top['id']}/similar", params={"limit": 3}).json()["hits"]
    assert len(similar) == 3 and top["id"] not in {h["id"] for h in similar}
    thumb = client.get(f"/v1/assets/{top['id']}/thumbnail", params={"size": 64})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 64


def test_mixed_weighted_terms_with_a_negative(client: TestClient, library: Path) -> None:
    photos = sorted(library.rglob("*.jpg"))
    hits = client.post(
        "/v1/search",
        json={
            "terms": [
                {"image": base64.b64encode(photos[0].read_bytes()).decode(), "weight": 1},
                {"text": "people", "weight": -0.5},
            ],
            "limit": 8,
        },
    ).json()["hits"]
    assert hits[0]["path"] == str(photos[0])


def test_classify_and_texts(client: TestClient) -> None:
    asset_id = client.get("/v1/search", params={"q": "x", "limit": 1}).json()["hits"][0]["id"]
    result = client.post("/v1/classify", json={"asset": asset_id, "labels": ["dog", "cat", "car"]})
    assert result.status_code == 200
    probabilities = [row["probability"] for row in result.json()["labels"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-6)

    added = client.post(
        "/v1/texts", json={"name": "captions", "texts": ["a dog", "a cat", "a dog"]}
    )
    assert added.json() == {"name": "captions", "count": 2}
    assert client.get("/v1/texts").json() == [{"name": "captions", "count": 2}]
    texts = client.post("/v1/texts/captions/search", json={"asset": asset_id, "limit": 2}).json()
    assert sorted(t["text"] for t in texts) == ["a cat", "a dog"]


def test_ops_endpoints_and_page(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").status_code == 200
    client.get("/v1/search", params={"q": "cached query"})
    client.get("/v1/search", params={"q": "cached query"})
    metrics = client.get("/metrics").text
    assert 'clipdex_text_cache_total{result="hit"}' in metrics
    assert 'clipdex_http_requests_total{method="GET",route="/v1/search",status="200"}' in metrics
    page = client.get("/")
    assert page.status_code == 200 and "<title>clipdex</title>" in page.text
    assert (
        "access-control-allow-origin"
        not in client.get("/healthz", headers={"Origin": "https://evil.example"}).headers
    )


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "message"),
    [
        ("get", "/v1/search", {"params": {"q": "x", "limit": 0}}, 422, ""),
        ("get", "/v1/search", {"params": {"q": "x", "limit": 5000}}, 422, "limit must be"),
        ("get", "/v1/search", {"params": {"q": "-people"}}, 422, "positive term"),
        ("get", "/v1/search", {"params": {"q": "x", "where": "album"}}, 422, "key=value"),
        ("get", "/v1/search", {"params": {"q": "x", "where": "a.b=c"}}, 422, "metadata key"),
        ("get", "/v1/search", {"params": {"q": "x", "where": ["t=a", "t=b"]}}, 422, "once"),
        ("get", "/v1/search", {"params": {"q": "x", "orientation": "up"}}, 422, "orientation"),
        (
            "get",
            "/v1/search",
            {"params": {"q": "x", "min_width": 500, "max_width": 9}},
            422,
            "min_width is above max_width",
        ),
        (
            "get",
            "/v1/search",
            {"params": {"q": "x", "mode": "keyword", "min_score": 0.1}},
            422,
            "min_score is a cosine",
        ),
        (
            "post",
            "/v1/search/image",
            {"files": {"file": ("a.jpg", jpeg_bytes())}, "data": {"mode": "hybrid"}},
            422,
            "no words for hybrid mode",
        ),
        ("post", "/v1/search", {"json": {"query": "x", "terms": [{"text": "y"}]}}, 422, ""),
        ("post", "/v1/search", {"json": {"terms": [{"image": "not base64!"}]}}, 422, "base64"),
        ("get", "/v1/assets/nope", {}, 404, "no asset"),
        ("get", "/v1/assets/nope/similar", {}, 404, "asset ids are UUIDs"),
        ("get", f"/v1/assets/{uuid.UUID(int=7)}/similar", {}, 404, "no indexed asset"),
        (
            "post",
            "/v1/texts/none/search",
            {"json": {"image": base64.b64encode(jpeg_bytes()).decode()}},
            404,
            "no text set",
        ),
        (
            "post",
            "/v1/search/image",
            {"files": {"file": ("a.txt", b"hello")}},
            415,
            "unsupported image",
        ),
        (
            "post",
            "/v1/search",
            {"json": {"terms": [{"path": "/etc/passwd"}]}},
            422,
            "allowed image roots",
        ),
    ],
)
def test_client_mistakes_are_4xx_with_a_message(
    client: TestClient, method: str, url: str, kwargs: dict[str, object], status: int, message: str
) -> None:
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    assert message in str(response.json()["detail"])


def test_oversized_upload_is_refused_from_its_declared_length(settings: Settings) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 10_000})
    runtime = open_ready_runtime(small, encoder=FakeEncoder())
    try:
        with TestClient(create_app(small, runtime)) as client:
            response = client.post(
                "/v1/search/image", content=b"x" * 20_000,
                headers={"content-type": "multipart/form-data; boundary=b"},
            )  # fmt: skip
        assert response.status_code == 413
        assert "limit of 10000 bytes" in response.json()["detail"]
    finally:
        runtime.close()


def test_api_keys_have_read_and_write_scopes(indexed: Runtime) -> None:
    keyed = indexed.settings.model_copy(
        update={"api_read_keys": [SecretStr("r-key")], "api_write_keys": [SecretStr("w-key")]}
    )
    with TestClient(create_app(keyed, indexed)) as client:
        assert client.get("/v1/search", params={"q": "x"}).status_code == 401
        assert (
            client.get("/v1/search", params={"q": "x"}, headers={"X-API-Key": "bad"}).status_code
            == 403
        )
        assert (
            client.get("/v1/search", params={"q": "x"}, headers={"X-API-Key": "r-key"}).status_code
            == 200
        )
        body = {"name": "labels", "texts": ["a"]}
        assert (
            client.post("/v1/texts", json=body, headers={"X-API-Key": "r-key"}).status_code == 403
        )
        assert (
            client.post("/v1/texts", json=body, headers={"X-API-Key": "w-key"}).status_code == 200
        )
        assert client.get("/healthz").status_code == 200  # probes need no key


def test_a_thumbnail_is_only_made_from_the_bytes_that_were_indexed(
    client: TestClient, library: Path, photos: Path
) -> None:
    """As for the original image: a file replaced since it was indexed is not rendered."""
    top = client.get("/v1/search", params={"q": "x", "limit": 1}).json()["hits"][0]
    assert client.get(f"/v1/assets/{top['id']}/thumbnail").status_code == 200
    other = next(p for p in sorted(photos.glob("*.jpg")) if p.name != Path(top["path"]).name)
    Path(top["path"]).write_bytes(other.read_bytes())
    for kind in ("thumbnail", "image"):
        answer = client.get(f"/v1/assets/{top['id']}/{kind}")
        assert answer.status_code == 404, kind
        assert "bytes that were indexed" in answer.json()["detail"]


def test_an_empty_library_is_ready_whatever_was_asked_before(settings: Settings) -> None:
    """A load balancer gating on /readyz must route a fresh deployment its first upload; a
    read request must not change the answer."""
    runtime = open_ready_runtime(settings, encoder=FakeEncoder())
    try:
        with TestClient(create_app(settings, runtime)) as fresh:
            for _ in range(2):
                ready = fresh.get("/readyz")
                assert ready.status_code == 200 and ready.json()["status"] == "ok"
                assert fresh.get("/v1/texts").json() == []
                assert fresh.get("/v1/search", params={"q": "dog"}).json()["hits"] == []
    finally:
        runtime.close()


def test_query_images_decode_a_few_at_a_time(
    indexed: Runtime, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each large query image takes hundreds of MB while it decodes: concurrent image
    searches wait for one of CLIPDEX_DECODE_WORKERS slots instead of all decoding at once."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import search.engine

    running, most = 0, 0
    lock = threading.Lock()
    real = search.engine.decode_bytes

    def slow_decode(data: bytes, limits: object) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return real(data, limits)  # type: ignore[arg-type]

    monkeypatch.setattr(search.engine, "decode_bytes", slow_decode)
    photo = sorted(library.rglob("*.jpg"))[0].read_bytes()
    with TestClient(create_app(indexed.settings, indexed)) as client:

        def search_by_image(_: int) -> int:
            files = {"file": ("q.jpg", photo)}
            return client.post("/v1/search/image", files=files).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(search_by_image, range(8))) == [200] * 8
    assert most == indexed.settings.decode_workers == 2


def test_head_answers_as_get_without_a_body(client: TestClient) -> None:
    """Load balancers probe with HEAD: the GET's status and headers, no body."""
    top = client.get("/v1/search", params={"q": "x", "limit": 1}).json()["hits"][0]
    for url in ("/healthz", "/readyz", "/v1/search?q=x", f"/v1/assets/{top['id']}/thumbnail"):
        got, head = client.get(url), client.head(url)
        assert head.status_code == got.status_code == 200, url
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
        assert int(head.headers["content-length"]) == len(got.content) > 0, url
    assert client.head("/v1/assets/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.head("/v1/texts/captions/search").status_code == 405  # POST only


def test_an_unknown_asset_id_is_not_echoed_whole(client: TestClient) -> None:
    long_id = "A" * 60_000
    for url in (f"/v1/assets/{long_id}", f"/v1/assets/{long_id}/similar"):
        answer = client.get(url)
        assert answer.status_code == 404 and len(answer.content) < 300, len(answer.content)
        assert "asset ids are UUIDs" in answer.json()["detail"]
