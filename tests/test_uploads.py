"""HTTP uploads: 202 and a job, progress and failures per job, content-addressed storage."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from clipdex.http import create_app
from core.catalog.models import Asset
from core.runtime import Runtime
from tests.server import serve

pytestmark = pytest.mark.unit


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime.settings, runtime)) as test_client:
        yield test_client


def wait_for_job(client: TestClient, job: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status: dict[str, object] = client.get(f"/v1/jobs/{job}").json()
        if status["done"]:
            return status
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def test_upload_is_indexed_and_searchable(client: TestClient, photos: Path) -> None:
    images = sorted(photos.glob("*.jpg"))[:3]
    response = client.post(
        "/v1/images",
        files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in images],
        data={"metadata": json.dumps({"album": "trip", "year": 2020, "public": True})},
    )
    assert response.status_code == 202
    accepted = response.json()
    assert (accepted["new"], accepted["duplicates"], len(accepted["assets"])) == (3, 0, 3)
    status = wait_for_job(client, accepted["job"])
    assert status["states"]["indexed"] == 3 and status["failures"] == []  # type: ignore[index]
    hit = client.post("/v1/search/image", files={"file": ("q.jpg", images[1].read_bytes())}).json()[
        "hits"
    ][0]
    assert hit["id"] == accepted["assets"][1]
    stored = {"album": "trip", "year": "2020", "public": "true"}  # values are kept as text
    assert hit["meta"] == stored  # the upload's metadata comes back with its hits
    assert client.get(f"/v1/assets/{hit['id']}").json()["meta"] == stored
    for metadata in ({"album": "trip"}, {"year": 2020, "public": True}, {"year": "2020"}):
        tagged = client.post(
            "/v1/search",
            json={"query": "a photo", "limit": 10, "filters": {"metadata": metadata}},
        ).json()["hits"]
        assert {h["id"] for h in tagged} == set(accepted["assets"]), metadata
    flat = client.get("/v1/search", params={"q": "a photo", "where": "year=2020"}).json()
    assert {h["id"] for h in flat["hits"]} == set(accepted["assets"])


def test_a_broken_image_ends_in_the_jobs_failures(client: TestClient, photos: Path) -> None:
    data = sorted(photos.glob("*.jpg"))[0].read_bytes()[:900]  # a valid header, no pixels
    accepted = client.post("/v1/images", files={"files": ("cut.jpg", data)}).json()
    status = wait_for_job(client, accepted["job"])
    assert status["states"]["failed"] == 1  # type: ignore[index]
    assert status["failures"][0]["filename"] == "cut.jpg"  # type: ignore[index]
    assert "corrupt" in status["failures"][0]["reason"]  # type: ignore[index]


def test_a_request_with_no_image_is_refused_and_nothing_is_stored(
    client: TestClient, runtime: Runtime
) -> None:
    response = client.post(
        "/v1/images",
        files=[("files", ("notes.txt", b"hello")), ("files", ("empty.jpg", b""))],
    )
    assert response.status_code == 415
    assert "notes.txt" in response.json()["detail"] and "1 more" in response.json()["detail"]
    assert not runtime.settings.blobs.exists() or not any(runtime.settings.blobs.rglob("*"))


def test_a_file_that_is_not_an_image_is_a_failure_of_its_job_and_the_batch_goes_on(
    client: TestClient, photos: Path, pillow_images: Path
) -> None:
    good = sorted(photos.glob("*.jpg"))[:2]
    broken = (pillow_images / "broken.png").read_bytes()  # Pillow's own broken PNG
    response = client.post(
        "/v1/images",
        files=[
            ("files", ("one.jpg", good[0].read_bytes())),
            ("files", ("broken.png", broken)),
            ("files", ("two.jpg", good[1].read_bytes())),
        ],
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert len(accepted["assets"]) == 2 and accepted["new"] == 2
    [rejected] = accepted["rejected"]
    assert rejected["filename"] == "broken.png" and rejected["reason"]
    status = wait_for_job(client, accepted["job"])
    assert status["total"] == 3
    assert status["states"]["indexed"] == 2 and status["states"]["failed"] == 1  # type: ignore[index]
    [failure] = status["failures"]  # type: ignore[misc]
    assert failure["filename"] == "broken.png" and failure["reason"] == rejected["reason"]
    listed = client.get("/v1/failures").json()
    assert [row["reason"] for row in listed] == [rejected["reason"]]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"files": {"files": ("a.jpg", b"x" * 30_000)}}, 413),
        ({"data": {"metadata": "[1, 2]"}, "files": {"files": ("a.jpg", b"x")}}, 422),
        ({}, 422),
        ({"files": {"files": ("notes.txt", b"plain text, not an image")}}, 415),
        ({"data": {"metadata": "{" * 10_001}, "files": {"files": ("a.jpg", b"x")}}, 422),
        ({"data": {"metadata": '{"a.b": 1}'}, "files": {"files": ("a.jpg", b"x")}}, 422),
        ({"data": {"metadata": '{"k": {"nested": 1}}'}, "files": {"files": ("a.jpg", b"x")}}, 422),
    ],
)
def test_bad_upload_requests(runtime: Runtime, kwargs: dict[str, object], status: int) -> None:
    small = runtime.settings.model_copy(update={"max_upload_bytes": 20_000})
    with TestClient(create_app(small, runtime)) as client:
        response = client.post("/v1/images", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == status
        assert response.json()["detail"]  # every refusal is JSON with a message
        assert client.get("/v1/jobs/not-a-job").status_code == 404


def test_uploads_need_a_write_key(runtime: Runtime, photos: Path) -> None:
    keyed = runtime.settings.model_copy(
        update={"api_read_keys": [SecretStr("r")], "api_write_keys": [SecretStr("w")]}
    )
    data = {"files": ("a.jpg", sorted(photos.glob("*.jpg"))[0].read_bytes())}
    with TestClient(create_app(keyed, runtime)) as client:
        assert client.post("/v1/images", files=data).status_code == 401
        assert client.post("/v1/images", files=data, headers={"X-API-Key": "r"}).status_code == 403
        assert client.post("/v1/images", files=data, headers={"X-API-Key": "w"}).status_code == 202


def test_the_same_bytes_uploaded_100_times_at_once_are_one_asset(
    runtime: Runtime, photos: Path
) -> None:
    data = sorted(photos.glob("*.jpg"))[7].read_bytes()
    # A connection per request: a pooled keep-alive connection can be closed by the server
    # while a request is being sent on it (a client-side race, not what this test is about).
    fresh = httpx.Limits(max_keepalive_connections=0)
    with (
        serve(create_app(runtime.settings, runtime)) as url,
        httpx.Client(timeout=60, limits=fresh) as http,
    ):

        def upload(i: int) -> httpx.Response:
            return http.post(f"{url}/v1/images", files={"files": (f"copy-{i}.jpg", data)})

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(upload, range(100)))
        assert [r.status_code for r in responses] == [202] * 100
        assert {r.json()["assets"][0] for r in responses} == {responses[0].json()["assets"][0]}
        assert sum(r.json()["new"] for r in responses) == 1
        last = responses[-1].json()["job"]
        deadline = time.monotonic() + 60
        while not http.get(f"{url}/v1/jobs/{last}").json()["done"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # Indexed once: concurrent in-process indexing of one row looked like redeliveries of
        # a dying worker, and the third dead-lettered the image.
        assert http.get(f"{url}/v1/failures").json() == []
        assert http.get(f"{url}/v1/jobs/{last}").json()["states"]["indexed"] == 1
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Asset)) == 1
    assert len([p for p in runtime.settings.blobs.rglob("*") if p.is_file()]) == 1
    assert runtime.live_index()[1].count() == 1


def test_jobs_command_shows_the_upload(client: TestClient, runtime: Runtime, photos: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import cli_env

    accepted = client.post(
        "/v1/images", files={"files": ("one.jpg", sorted(photos.glob("*.jpg"))[2].read_bytes())}
    ).json()
    wait_for_job(client, accepted["job"])
    runtime.close()  # the CLI is another process: let it have the embedded store
    env = cli_env(runtime.settings.home, CLIPDEX_MODEL="fake")
    result = subprocess.run(
        [sys.executable, "-m", "clipdex", "jobs", accepted["job"], "--json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["id"] == accepted["job"] and shown["states"]["indexed"] == 1 and shown["done"]


def test_ingesting_the_folder_that_holds_the_home_keeps_the_uploads(
    client: TestClient, runtime: Runtime, photos: Path, library: Path, tmp_path: Path
) -> None:
    """`clipdex ingest ~` with the home under ``~``: uploads live in the home's blob folder
    under names no scan finds, so a scan that entered it took them for deleted files and every
    upload left the index. The home is left out of the scan, and its paths are kept."""
    from ingest.forget import remove_library
    from ingest.libraries import add_library, own_folders
    from ingest.run import ingest
    from ingest.scan import UnusableRoot

    upload = sorted(photos.glob("*.jpg"))[-1]  # not among the library's eight
    accepted = client.post(
        "/v1/images", files=[("files", (upload.name, upload.read_bytes(), "image/jpeg"))]
    ).json()
    wait_for_job(client, accepted["job"])
    asset = accepted["assets"][0]
    assert runtime.settings.home.parent == library.parent == tmp_path
    for _ in range(2):  # the first scan, then a rescan
        report = ingest(runtime, [tmp_path])
        assert (report.scanned, report.removed, report.failed) == (8, 0, 0)
        shown = client.get(f"/v1/assets/{asset}").json()
        assert shown["state"] == "indexed" and len(shown["paths"]) == 1
        query = client.post("/v1/search/image", files={"file": ("q.jpg", upload.read_bytes())})
        assert query.json()["hits"][0]["id"] == asset
    blobs = runtime.settings.blobs
    with pytest.raises(UnusableRoot, match="inside clipdex's own folder"):
        ingest(runtime, [blobs])
    with runtime.sessions() as session, pytest.raises(UnusableRoot, match="CLIPDEX_BLOB_ROOT"):
        add_library(session, blobs, [], False, own_folders(runtime.settings))
    with runtime.sessions() as session:  # a library around the home, then removed
        add_library(session, tmp_path, [], False, own_folders(runtime.settings))
        session.commit()
    assert remove_library(runtime, str(tmp_path)).paths == 8  # the library's, not the upload's
    shown = client.get(f"/v1/assets/{asset}").json()
    assert shown["state"] == "indexed" and len(shown["paths"]) == 1


def test_the_same_broken_file_sent_with_many_uploads_at_once_is_one_failure(
    runtime: Runtime, photos: Path, pillow_images: Path
) -> None:
    """Its failure row is written by whichever request comes first; the others update it."""
    data = sorted(photos.glob("*.jpg"))[7].read_bytes()
    broken = (pillow_images / "broken.png").read_bytes()
    fresh = httpx.Limits(max_keepalive_connections=0)
    with (
        serve(create_app(runtime.settings, runtime)) as url,
        httpx.Client(timeout=60, limits=fresh) as http,
    ):

        def upload(i: int) -> httpx.Response:
            files = [("files", (f"copy-{i}.jpg", data)), ("files", ("broken.png", broken))]
            return http.post(f"{url}/v1/images", files=files)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(upload, range(24)))
        assert [r.status_code for r in responses] == [202] * 24, responses[0].text
        assert {len(r.json()["rejected"]) for r in responses} == {1}
        failures = http.get(f"{url}/v1/failures").json()
    assert len(failures) == 1 and failures[0]["reason"]
