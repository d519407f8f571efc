"""The user's own metadata: ``clipdex tag``, ``PATCH /v1/assets/{id}`` (no re-encode), upload
metadata, and ``DELETE /v1/assets/{id}`` (uploads removed, path assets forgotten)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.catalog.models import Asset, AssetIndexState, AssetState, Location
from core.runtime import Runtime
from core.store.base import SearchFilter
from ingest.fetch import FetchPolicy
from ingest.manifest_ingest import ingest_manifest
from ingest.metadata import BadMetadata, checked, update_metadata
from ingest.pipeline import Pipeline
from ingest.run import ingest
from ingest.verify import Checks, verify
from search.engine import SearchService
from search.query import SearchOptions
from tests.conftest import cli_env, one_line_error, run_cli
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
    env = cli_env(runtime.settings.home)

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


def test_text_that_is_not_utf8_is_refused_naming_the_key() -> None:
    """A lone surrogate (a JSON ``"\\udcff"`` escape, a non-UTF-8 byte of a shell argument)
    is a Python str, but the stored payload and every JSON answer are UTF-8: refused here."""
    for bad in ({"album": "\udcff"}, {"who": ["ann", "x\ud800y"]}, {"\udcff": "x"}):
        with pytest.raises(BadMetadata) as refused:
            checked(bad, removals=True)
        message = str(refused.value)
        message.encode("ascii")  # shown safely: the surrogate itself is escaped
        assert repr(next(iter(bad))) in message


def test_a_patch_that_is_not_utf8_is_422_and_the_asset_still_reads(
    runtime: Runtime, library: Path, client: TestClient
) -> None:
    ingest(runtime, [library])
    asset_id = _asset_at(runtime, sorted(library.rglob("*.jpg"))[0].resolve())
    assert client.patch(f"/v1/assets/{asset_id}", json={"metadata": {"album": "kept"}}).is_success
    for raw in ('{"metadata": {"album": "\\udcff"}}', '{"metadata": {"w": ["a", "\\ud800"]}}'):
        response = client.patch(
            f"/v1/assets/{asset_id}", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert "not UTF-8" in response.json()["detail"]
    read = client.get(f"/v1/assets/{asset_id}")
    assert read.status_code == 200, read.text
    assert read.json()["meta"] == {"album": "kept"}
    assert _hits(runtime, album="kept") == {asset_id: {"album": "kept"}}


def test_an_upload_whose_metadata_is_not_utf8_is_422_and_stores_nothing(
    runtime: Runtime, client: TestClient, photos: Path
) -> None:
    image = sorted(photos.glob("*.jpg"))[6]
    response = client.post(
        "/v1/images",
        files={"files": (image.name, image.read_bytes())},
        data={"metadata": '{"album": "\\udcff"}'},
    )
    assert response.status_code == 422, response.text
    assert "'album'" in response.json()["detail"]
    assert client.get("/v1/jobs").json() == []
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Asset)) == 0


def test_tag_with_a_byte_that_is_not_utf8_is_one_line_and_verify_stays_clean(
    runtime: Runtime, library: Path
) -> None:
    ingest(runtime, [library])
    photo = sorted(library.rglob("*.jpg"))[1]
    runtime.close()  # the CLI is another process: let it have the embedded store
    home = runtime.settings.home
    assert run_cli(home, "tag", str(photo), "album=kept", CLIPDEX_MODEL="fake").returncode == 0
    refused = run_cli(home, "tag", str(photo), "album=\udcff", CLIPDEX_MODEL="fake")  # b"\xff"
    line = one_line_error(refused)
    assert "'album'" in line and "not UTF-8" in line
    reopened = open_ready_runtime(runtime.settings, encoder=FakeEncoder())
    try:
        version, index = reopened.live_index()
        checks = Checks(timedelta(seconds=60), reopened.settings.blobs)
        assert verify(reopened.sessions, index, version, checks).clean
        asset_id = _asset_at(reopened, photo.resolve())
        assert SearchService(reopened).asset(asset_id).meta == {"album": "kept"}
    finally:
        reopened.close()


def test_a_manifest_row_that_is_not_utf8_is_a_bad_row_and_the_others_go_on(
    runtime: Runtime, library: Path, tmp_path: Path
) -> None:
    photos = sorted(library.rglob("*.jpg"))[:4]
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"path": str(photos[0]), "album": "ok"},
        {"path": str(photos[1]), "album": "\udcff"},
        {"path": str(photos[2]), "metadata": {"who": ["ann", "\ud800"]}},
        {"path": str(photos[3]), "album": "ok"},
        {"url": "http://127.0.0.1:9/a\udcff.jpg"},  # the source itself, not its metadata
        {"url": "ftp://host/\udcff.jpg"},
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))  # "\\udcff" escapes
    report = ingest_manifest(runtime, manifest, FetchPolicy.of(5_000_000, 10.0, False, []))
    assert [row["line"] for row in report.bad_rows] == [2, 3, 5, 6]
    assert "'album'" in str(report.bad_rows[0]["reason"])
    assert "'who'" in str(report.bad_rows[1]["reason"])
    assert [row["reason"] for row in report.bad_rows[2:]] == ["not a usable URL"] * 2
    assert (report.new, report.encoded, report.tagged) == (2, 2, 2)
    assert len(_hits(runtime, album="ok")) == 2
    with runtime.sessions() as session:
        states = session.scalars(select(AssetIndexState.state)).all()
    assert sorted(states) == ["indexed"] * 2  # nothing left in "processing"


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


@pytest.mark.parametrize("first_check_misses", [True, False])
def test_an_asset_deleted_while_a_batch_encodes_it_leaves_no_hit(
    runtime: Runtime, library: Path, monkeypatch: pytest.MonkeyPatch, first_check_misses: bool
) -> None:
    """DELETE answered 200, yet the upload batch encoding the asset wrote its point after the
    deletion removed the points: a hit nothing could remove. Whichever of the batch's
    check and the deletion's second pass comes last removes it."""
    import threading

    from ingest.batch import index_assets
    from ingest.metadata import delete_asset
    from ingest.records import set_states

    ingest(runtime, [library])
    version, index = runtime.live_index()
    victim = _asset_at(runtime, sorted(library.rglob("*.jpg"))[2].resolve())
    index.delete([victim])
    with runtime.sessions() as session:
        set_states(session, version.id, [victim], AssetState.PENDING)
        session.commit()

    kind = type(index)
    real_delete, real_upsert, real_check = kind.delete, kind.upsert, Pipeline._forgotten_meanwhile
    points_deleted, batch_checked = threading.Event(), threading.Event()
    racer = threading.Thread(target=delete_asset, args=(runtime, victim))

    def delete(self: object, ids: list[str]) -> None:
        real_delete(self, ids)
        if not points_deleted.is_set():
            points_deleted.set()
            if first_check_misses:  # its rows stay until the batch has checked
                assert batch_checked.wait(30)

    def upsert(self: object, points: list[object]) -> None:
        if not racer.is_alive() and not points_deleted.is_set():
            racer.start()  # DELETE /v1/assets/{id} arrives: its points go first ...
            assert points_deleted.wait(30)
        real_upsert(self, points)  # ... then the batch writes the point it encoded

    def check(self: Pipeline, ids: list[str]) -> int:
        if not first_check_misses:  # the deletion is over: the batch drops the point itself
            racer.join(60)
        dropped = real_check(self, ids)
        batch_checked.set()
        return dropped

    monkeypatch.setattr(kind, "delete", delete)
    monkeypatch.setattr(kind, "upsert", upsert)
    monkeypatch.setattr(Pipeline, "_forgotten_meanwhile", check)
    index_assets(runtime, version.id, [victim])
    racer.join(60)
    assert not racer.is_alive()
    assert index.existing_ids([victim]) == set()
    assert victim not in {hit.id for hit in SearchService(runtime).text("a photo")}
    checks = Checks(timedelta(seconds=60), runtime.settings.blobs)
    assert verify(runtime.sessions, index, version, checks).clean


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
