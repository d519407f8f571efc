"""Making a version live (a swap, a rollback) never loses or resurrects an image: a version
that fell behind the live one is refused, and `clipdex reindex` catches it up."""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.catalog.index_versions import VersionRefused
from core.runtime import Runtime
from core.store.base import SearchFilter
from ingest.activation import activate_synced
from ingest.reindex import reindex
from ingest.run import ingest
from search.engine import SearchService, target_for
from search.query import SearchOptions
from tests.test_reindex import OtherFake, indexed, plan_for, points

pytestmark = pytest.mark.unit


def test_a_version_behind_the_live_one_is_refused_until_reindex_catches_it_up(
    runtime: Runtime, library: Path, photos: Path
) -> None:
    ingest(runtime, [library])
    live = runtime.live_version()
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other
    ready = reindex(runtime, plan_for(runtime, other, swap=False)).version  # `--no-swap`
    added = library / "added.jpg"
    shutil.copy2(sorted(photos.glob("*.jpg"))[-1], added)
    gone = sorted(library.rglob("*.jpg"))[0]
    gone.unlink()
    ingest(runtime, [library])  # into the live version only: the ready one falls behind

    with pytest.raises(VersionRefused, match=r"1 assets to add, 1 to remove") as refused:
        runtime.activate(ready)  # would lose added.jpg and bring the deleted photo back
    assert "clipdex reindex --model fake2 --pretrained none" in str(refused.value)
    assert runtime.catalog_live() is not None and runtime.catalog_live().id == live.id

    report = reindex(runtime, plan_for(runtime, other))  # what that command does
    assert report.swapped and report.version == ready and report.encoded == 1
    assert indexed(runtime, ready) == indexed(runtime, live.id) == points(runtime, ready)
    target = target_for(runtime, runtime.version(ready))
    hits = SearchService(runtime, lambda: target).text("a photo", SearchOptions(limit=50))
    paths = {hit.path for hit in hits}
    assert str(added) in paths and str(gone) not in paths
    runtime.activate(live.id)  # nothing changed since: the rollback is allowed


def test_activate_over_http_answers_409_behind_and_404_unknown(
    runtime: Runtime, library: Path, photos: Path
) -> None:
    ingest(runtime, [library])
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other
    ready = reindex(runtime, plan_for(runtime, other, swap=False)).version
    shutil.copy2(sorted(photos.glob("*.jpg"))[-1], library / "added.jpg")
    ingest(runtime, [library])
    with TestClient(create_app(runtime.settings, runtime)) as client:
        behind = client.post(f"/v1/index/{ready}/activate")
        assert behind.status_code == 409 and "behind the live one" in behind.json()["detail"]
        unknown = client.post("/v1/index/99/activate")
        assert unknown.status_code == 404 and "no index version" in unknown.json()["detail"]


def test_after_a_swap_in_the_server_its_ingest_jobs_use_the_new_model(
    runtime: Runtime, library: Path, photos: Path
) -> None:
    """The server was started with the old model; a reindex through it swapped. Its ingest
    jobs (what `clipdex ingest` asks it for) then encode new files with the new model into the
    new version, instead of refusing until a restart."""
    ingest(runtime, [library])
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other
    token = {"X-API-Key": "local-token"}
    app = create_app(runtime.settings, runtime, local_token="local-token")  # noqa: S106
    with TestClient(app) as client:
        ready = reindex(runtime, plan_for(runtime, other, swap=False)).version
        assert client.post(f"/v1/index/{ready}/activate", headers=token).status_code == 200
        encoded = other.images_encoded
        shutil.copy2(sorted(photos.glob("*.jpg"))[-1], library / "added.jpg")
        job = client.post("/v1/admin/ingest", json={"paths": [str(library)]}, headers=token)
        assert job.status_code == 202, job.text
        body = job.json()
        deadline = time.monotonic() + 60
        while body["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
            body = client.get(f"/v1/admin/jobs/{body['id']}", headers=token).json()
        assert body["state"] == "done" and body["report"]["encoded"] == 1, body
    assert other.images_encoded == encoded + 1  # by the new version's model
    assert indexed(runtime, ready) == points(runtime, ready)


def test_work_in_flight_blocks_a_manual_switch_but_not_the_swap_of_a_reindex(
    runtime: Runtime, library: Path, photos: Path
) -> None:
    """An upload still pending on the live version would be lost by a manual switch, so it is
    refused; a reindex's own swap (just caught up, uploads arriving all the time) is not."""
    from ingest.uploads import Upload, accept

    ingest(runtime, [library])
    live = runtime.live_version()
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other
    ready = reindex(runtime, plan_for(runtime, other, swap=False)).version
    data = sorted(photos.glob("*.jpg"))[-1].read_bytes()
    accept(runtime, [Upload("in-flight.jpg", data)], {})  # pending on the live version

    with pytest.raises(VersionRefused, match=r"1 assets to add, 0 to remove"):
        runtime.activate(ready)
    report = reindex(runtime, plan_for(runtime, other))  # catches it up, then swaps
    assert report.swapped and report.version == ready and report.state == "live"
    assert runtime.catalog_live() is not None and runtime.catalog_live().id == ready
    assert live.id != ready


def test_a_rollback_is_allowed_when_the_new_model_failed_on_an_image(
    runtime: Runtime, library: Path
) -> None:
    """An image the new model failed on is no drift: the old version still holds it."""
    from sqlalchemy import update

    from core.catalog.models import AssetIndexState, AssetState

    ingest(runtime, [library])
    old = runtime.live_version()
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other
    new = reindex(runtime, plan_for(runtime, other)).version
    first = sorted(indexed(runtime, new))[0]
    with runtime.sessions() as session:  # as a worker leaves a poison image of the new model
        session.execute(
            update(AssetIndexState)
            .where(AssetIndexState.index_version_id == new, AssetIndexState.asset_id == first)
            .values(state=AssetState.FAILED)
        )
        session.commit()
    back, retired = runtime.activate(old.id)
    assert back.id == old.id and retired is not None and retired.id == new
    assert first in indexed(runtime, old.id)


@pytest.mark.parametrize("how", ["activate", "reindex"])
def test_going_back_to_a_kept_version_shows_what_the_catalog_says_now(
    runtime: Runtime, library: Path, how: str
) -> None:
    """A rollback after a move and a tag: the old version's payloads were written before
    them. Made live, it shows the file where it is now, with its tag, and verifies clean."""
    from ingest.metadata import update_metadata
    from ingest.verify import Checks, verify

    ingest(runtime, [library])
    old = runtime.live_version()
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other
    reindex(runtime, plan_for(runtime, other))  # the new version is live, the old retired
    moved_from = sorted(library.rglob("*.jpg"))[0]
    moved = library / "elsewhere" / "moved.jpg"
    moved.parent.mkdir()
    moved_from.rename(moved)
    # The commands of the new model's days (CLIPDEX_MODEL set to it), on the same home:
    newer = open_ready_runtime(runtime.settings, encoder=other, store=runtime.store)
    try:
        ingest(newer, [library])  # a move: the live version's payload follows it
        tagged, _ = update_metadata(newer, str(moved), {"album": "kept"})
    finally:
        newer.engine.dispose()  # not close(): the store is shared with ``runtime``

    if how == "activate":  # `clipdex index activate OLD`
        activate_synced(runtime, old.id)
    else:  # `clipdex reindex --model OLD-MODEL`: catches the old version up, then swaps
        runtime._encoders.pop(("fake2", "none"))
        report = reindex(runtime, plan_for(runtime, runtime.encoder))
        assert report.swapped and report.version == old.id and report.encoded == 0
    live = runtime.version(old.id)
    assert live.active
    target = target_for(runtime, live)
    service = SearchService(runtime, lambda: target)
    hits = service.text("a photo", SearchOptions(limit=50))
    assert {hit.id: hit.path for hit in hits}[tagged] == str(moved)
    assert str(moved_from) not in {hit.path for hit in hits}
    albums = SearchOptions(limit=50, filters=SearchFilter(metadata=(("album", "kept"),)))
    assert [hit.id for hit in service.text("a photo", albums)] == [tagged]
    checks = Checks(timedelta(seconds=60), runtime.settings.blobs)
    assert verify(runtime.sessions, runtime.index_of(live), live, checks).clean


def test_a_refused_activation_makes_no_pass_over_the_points(
    runtime: Runtime, library: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The payload pass costs a read of every point: a version that will be refused (behind
    the live one) is refused first."""
    from ingest import activation

    ingest(runtime, [library])
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other
    ready = reindex(runtime, plan_for(runtime, other, swap=False)).version
    shutil.copy2(sorted(photos.glob("*.jpg"))[-1], library / "added.jpg")
    ingest(runtime, [library])

    def no_pass(*_: object) -> int:
        raise AssertionError("a payload pass before the refusal")

    monkeypatch.setattr(activation, "sync_payloads", no_pass)
    with pytest.raises(VersionRefused, match="behind the live one"):
        activate_synced(runtime, ready)
