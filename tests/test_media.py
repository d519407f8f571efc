"""GET /v1/assets/{id}/image: the original bytes of an indexed asset, and nothing else."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from clipdex.http import create_app
from core.runtime import Runtime
from ingest.run import ingest

pytestmark = pytest.mark.unit


@pytest.fixture
def client(runtime: Runtime, library: Path) -> Iterator[TestClient]:
    ingest(runtime, [library])
    with TestClient(create_app(runtime.settings, runtime)) as test_client:
        yield test_client


def _first_hit(client: TestClient) -> dict[str, Any]:
    hit: dict[str, Any] = client.get("/v1/search", params={"q": "a photo", "limit": 1}).json()[
        "hits"
    ][0]
    return hit


def test_a_folder_asset_is_served_byte_for_byte(client: TestClient) -> None:
    hit = _first_hit(client)
    response = client.get(f"/v1/assets/{hit['id']}/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == Path(hit["path"]).read_bytes()
    assert Path(hit["path"]).name in response.headers["content-disposition"]
    assert Image.open(io.BytesIO(response.content)).size == (hit["width"], hit["height"])
    again = client.get(
        f"/v1/assets/{hit['id']}/image", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304 and not again.content


def test_an_upload_is_served_from_its_blob(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 90)).save(buffer, "PNG")
    data = buffer.getvalue()
    accepted = client.post("/v1/images", files=[("files", ("green.png", data, "image/png"))])
    assert accepted.status_code == 202
    asset = accepted.json()["assets"][0]
    deadline = time.monotonic() + 30
    while not client.get(f"/v1/jobs/{accepted.json()['job']}").json()["done"]:
        assert time.monotonic() < deadline, "the upload was not indexed"
        time.sleep(0.1)
    response = client.get(f"/v1/assets/{asset}/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == data


def test_a_file_changed_since_indexing_is_not_served(client: TestClient) -> None:
    hit = _first_hit(client)
    path = Path(hit["path"])
    path.write_bytes(path.read_bytes() + b"trailing bytes")  # same picture, other bytes
    response = client.get(f"/v1/assets/{hit['id']}/image")
    assert response.status_code == 404
    assert "indexed" in response.json()["detail"]


def test_unknown_and_malformed_ids_are_404(client: TestClient) -> None:
    for asset_id in (str(uuid.uuid4()), "not-a-uuid", "..%2F..%2Fetc%2Fpasswd"):
        response = client.get(f"/v1/assets/{asset_id}/image")
        assert response.status_code == 404, asset_id
        assert response.json()["detail"]


def test_the_image_needs_the_read_key(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    settings = runtime.settings.model_copy(update={"api_read_keys": [SecretStr("reader")]})
    with TestClient(create_app(settings, runtime)) as client:
        hit = client.get(
            "/v1/search", params={"q": "x", "limit": 1}, headers={"X-API-Key": "reader"}
        ).json()["hits"][0]
        assert client.get(f"/v1/assets/{hit['id']}/image").status_code == 401
        served = client.get(f"/v1/assets/{hit['id']}/image", headers={"X-API-Key": "reader"})
        assert served.status_code == 200
        assert (
            hashlib.sha256(served.content).hexdigest()
            == hashlib.sha256(Path(hit["path"]).read_bytes()).hexdigest()
        )


def test_the_page_scripts_are_served_without_a_key(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"api_read_keys": [SecretStr("reader")]})
    with TestClient(create_app(settings, runtime)) as client:
        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        script = client.get("/static/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert client.get("/static/style.css").status_code == 200
        assert client.get("/static/../api/media.py").status_code == 404
