"""The user's own metadata: ``clipdex tag``, ``PATCH /v1/assets/{id}`` (no re-encode), upload
metadata, and ``DELETE /v1/assets/{id}`` (uploads removed, path assets forgotten)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from clipdex.http import create_app
from core.catalog.models import Asset, Location
from core.runtime import Runtime
from core.store.base import SearchFilter
from ingest.metadata import BadMetadata, checked, update_metadata
from ingest.run import ingest
from search.engine import SearchService
from search.query import SearchOptions
from tests.conftest import cli_env
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime.settings, runtime)) as test_client:
        yield test_client


def _asset_at(runtime: Runtime, path: Path) -> str:
    with runtime.sessions() as session:
        found = session.scalars(select(Location.asset_id).where(Location.path == str(path))).one()
    return str(found)


def _hits(runtime: Runtime, **metadata: str) -> dict[str, dict[str, object] | None]:
    filters = SearchFilter(metadata=tuple(metadata.items()))
    found = SearchService(runtime).text("a photo", SearchOptions(limit=100, filters=filters))
    return {hit.id: hit.meta for hit in found}


def _vector(runtime: Runtime, asset_id: str) -> np.ndarray:
    stored = runtime.live_index()[1].retrieve([asset_id], with_vectors=True)
    assert stored and stored[0].vector is not None
    return stored[0].vector


def test_tag_shows_on_hits_and_the_asset_and_filters(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    photo = sorted(library.rglob("*.jpg"))[0]
    asset_id, meta = update_metadata(runtime, str(photo), {"album": "summer", "who": ["ann"]})
    assert asset_id == _asset_at(runtime, photo.resolve())
    assert meta == {"album": "summer", "who": ["ann"]}
    assert _hits(runtime, album="summer") == {asset_id: meta}
    assert _hits(runtime, who="ann") == {asset_id: meta}
    assert SearchService(runtime).asset(asset_id).meta == meta
    _, meta = update_metadata(runtime, asset_id, {"album": None, "who": ["ann", "bob"]})
    assert meta == {"who": ["ann", "bob"]}
    assert _hits(runtime, album="summer") == {}
    assert set(_hits(runtime, who="bob")) == {asset_id}


def test_the_tag_command(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    photo = sorted(library.rglob("*.jpg"))[1]
    runtime.close()  # the CLI is another process: let it have the embedded store
    env = cli_env(runtime.settings.home, CLIPDEX_MODEL="fake")

    def clipdex(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clipdex", *args],
            env=env, capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip

    done = clipdex("tag", str(photo), "album=trip", "who=ann", "who=bob", "--json")
    assert done.returncode == 0, done.stderr
    tagged = json.loads(done.stdout)
    assert tagged["metadata"] == {"album": "trip", "who": ["ann", "bob"]}
    removed = clipdex("tag", tagged["id"], "--remove", "who")
    assert removed.returncode == 0 and "album=trip" in removed.stdout
    for bad, says in [
        (["tag", str(photo), "no-equals"], "is not key=value"),
        (["tag", str(photo), "a.b=1"], "no dots"),
        (["tag", "/nowhere.jpg", "a=1"], "no asset"),
        (["tag", str(photo)], "give key=value"),
    ]:
        refused = clipdex(*bad)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr


def test_patch_updates_metadata_without_encoding_again(
    runtime: Runtime, library: Path, client: TestClient
) -> None:
    ingest(runtime, [library])
    asset_id = _asset_at(runtime, sorted(library.rglob("*.jpg"))[2].resolve())
    encoder = runtime.encoder
    assert isinstance(encoder, FakeEncoder)
    before, encoded = _vector(runtime, asset_id), encoder.images_encoded
    response = client.patch(f"/v1/assets/{asset_id}", json={"metadata": {"rating": 5, "x": "y"}})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": asset_id, "metadata": {"rating": "5", "x": "y"}}
    response = client.patch(f"/v1/assets/{asset_id}", json={"metadata": {"x": None}})
    assert response.json()["metadata"] == {"rating": "5"}
    assert _hits(runtime, rating="5") == {asset_id: {"rating": "5"}}
    assert np.array_equal(_vector(runtime, asset_id), before)
    assert encoder.images_encoded == encoded
    assert client.get(f"/v1/assets/{asset_id}").json()["meta"] == {"rating": "5"}


@pytest.mark.parametrize(
    "body",
    [{"metadata": [1]}, {"metadata": {"a.b": "x"}}, {"metadata": {"k": {"nested": 1}}},
     {"metadata": {"k": "x" * 1001}}, {"other": {}}, {}],
)  # fmt: skip
def test_bad_patch_bodies_are_422(
    runtime: Runtime, library: Path, client: TestClient, body: dict[str, object]
) -> None:
    ingest(runtime, [library])
    asset_id = _asset_at(runtime, sorted(library.rglob("*.jpg"))[0].resolve())
    response = client.patch(f"/v1/assets/{asset_id}", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_unknown_assets_are_404(runtime: Runtime, client: TestClient) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    for method in ("PATCH", "DELETE"):
        for asset_id in (unknown, "not-a-uuid"):
            kwargs = {"json": {"metadata": {"a": "b"}}} if method == "PATCH" else {}
            response = client.request(method, f"/v1/assets/{asset_id}", **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 404, (method, asset_id, response.text)


def test_metadata_values_are_text_or_lists_of_text() -> None:
    assert checked({"n": 3, "f": 1.5, "b": False, "l": [1, "a"]}) == {
        "n": "3", "f": "1.5", "b": "false", "l": ["1", "a"],
    }  # fmt: skip
    for bad in ({"": "x"}, {"a b": "x"}, {"k": float("nan")}, {"k": [[1]]}, {"k": None}):
        with pytest.raises(BadMetadata):
            checked(bad)


def _wait_for_job(client: TestClient, job: str) -> None:
    deadline = time.monotonic() + 60
    while not client.get(f"/v1/jobs/{job}").json()["done"]:
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.1)


def test_upload_metadata_is_kept_and_delete_removes_the_upload(
    runtime: Runtime, client: TestClient, photos: Path
) -> None:
    image = sorted(photos.glob("*.jpg"))[5]
    accepted = client.post(
        "/v1/images",
        files={"files": (image.name, image.read_bytes())},
        data={"metadata": json.dumps({"album": "uploads", "year": 2021})},
    ).json()
    _wait_for_job(client, accepted["job"])
    asset_id = accepted["assets"][0]
    assert _hits(runtime, album="uploads") == {asset_id: {"album": "uploads", "year": "2021"}}
    blobs = [p for p in runtime.settings.blobs.rglob("*") if p.is_file()]
    assert len(blobs) == 1

    response = client.delete(f"/v1/assets/{asset_id}")
    assert response.status_code == 200, response.text
    assert response.json()["kind"] == "upload"
    assert not blobs[0].exists()
    assert runtime.live_index()[1].count() == 0
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Asset)) == 0
    assert client.get(f"/v1/assets/{asset_id}").status_code == 404
    assert client.delete(f"/v1/assets/{asset_id}").status_code == 404


def test_delete_forgets_a_path_asset_and_a_rescan_brings_it_back(
    runtime: Runtime, library: Path, client: TestClient
) -> None:
    ingest(runtime, [library])
    photo = sorted(library.rglob("*.jpg"))[3].resolve()
    asset_id = _asset_at(runtime, photo)
    points = runtime.live_index()[1].count()
    response = client.delete(f"/v1/assets/{asset_id}")
    assert response.json() == {"id": asset_id, "kind": "paths", "paths": [str(photo)]}
    assert photo.exists()  # the file on disk is never touched
    assert runtime.live_index()[1].count() == points - 1
    assert asset_id not in {hit.id for hit in SearchService(runtime).text("a photo")}
    report = ingest(runtime, [library])
    assert report.new == 1 and report.encoded == 1
    assert runtime.live_index()[1].count() == points


@pytest.mark.tiny_real
def test_tag_goes_through_a_running_serve(library: Path, tmp_path: Path) -> None:
    """While `clipdex serve` owns the embedded home, `clipdex tag` asks it (PATCH) instead of
    failing on the held store; the server's own searches see the change at once."""
    from tests.home_serve import clipdex, serving

    env = cli_env(tmp_path / "home")
    clipdex(env, "ingest", str(library))
    photo = sorted(library.rglob("*.jpg"))[4]
    with serving(tmp_path / "home", env, tmp_path / "serve.log"):
        done = clipdex(env, "tag", str(photo), "album=served", "--json")
        assert json.loads(done.stdout)["metadata"] == {"album": "served"}
        searched = clipdex(env, "search", "a photo", "--where", "album=served", "--json")
        found = json.loads(searched.stdout)
        hits = found["hits"] if isinstance(found, dict) else found
        assert [hit["meta"] for hit in hits] == [{"album": "served"}]
        refused = clipdex(env, "tag", str(photo), "a.b=1", code=2)
        assert "no dots" in refused.stderr and "Traceback" not in refused.stderr
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"path,album\n{photo},x\n")
        refused = clipdex(env, "ingest", str(manifest), code=2)  # said in one line, not "locked"
        assert refused.stderr.count("\n") == 1 and "stop it to ingest a manifest" in refused.stderr
