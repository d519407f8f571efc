"""Verify and repair: each kind of drift between the catalog and the store is found exactly,
repaired, and verified clean, and search finds the repaired images again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from clipdex.catalog import open_ready_runtime
from core.catalog.models import AssetIndexState, AssetState, Failure, Location, utcnow
from core.runtime import Runtime
from core.settings import Settings, load_settings
from core.store.base import PointRecord
from ingest.run import ingest
from ingest.uploads import Upload, accept, sort_uploads
from ingest.verify import Checks, Encoding, RepairReport, VerifyReport, repair, verify
from search.engine import SearchService
from search.query import SearchOptions
from tests.conftest import cli_env
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


def checks(settings: Settings) -> Checks:
    return Checks(timedelta(seconds=settings.reconcile_after_seconds), settings.blobs)


def check(runtime: Runtime) -> VerifyReport:
    version, index = runtime.live_index()
    return verify(runtime.sessions, index, version, checks(runtime.settings))


def fix(runtime: Runtime) -> RepairReport:
    version, index = runtime.live_index()
    settings = runtime.settings
    encoding = Encoding(
        runtime.encoder,
        runtime.decode_limits(version),
        settings.batch_size,
        settings.decode_workers,
    )
    return repair(runtime.sessions, index, version, checks(settings), encoding)


def drift(report: VerifyReport) -> dict[str, int]:
    return {kind: found.count for kind, found in report.findings.items() if found.count}


def id_of(runtime: Runtime, photo: Path) -> str:
    with runtime.sessions() as session:
        return session.scalars(select(Location.asset_id).where(Location.path == str(photo))).one()


def assert_found(runtime: Runtime, photo: Path) -> None:
    hits = SearchService(runtime).image(photo, SearchOptions(limit=1))
    assert hits[0].path == str(photo)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def repaired_clean(runtime: Runtime) -> RepairReport:
    done = fix(runtime)
    after = check(runtime)
    assert after.clean, drift(after)
    assert after.indexed == after.points
    return done


def test_a_fresh_library_verifies_clean(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    report = check(runtime)
    assert report.clean and (report.indexed, report.points) == (8, 8)
    assert fix(runtime) == RepairReport()  # nothing to do, nothing encoded


def test_missing_points_are_found_and_encoded_again(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    ingest(runtime, [library])
    photos = sorted(library.rglob("*.jpg"))[:3]
    lost = sorted(id_of(runtime, photo) for photo in photos)
    runtime.live_index()[1].delete(lost)

    report = check(runtime)
    assert drift(report) == {"missing_points": 3}
    assert sorted(report.findings["missing_points"].sample) == lost
    done = repaired_clean(runtime)
    assert (done.missing_points, done.encoded, done.reused) == (3, 3, 0)
    assert fake_encoder.images_encoded == 11
    for photo in photos:
        assert_found(runtime, photo)


def test_a_file_away_during_repair_is_encoded_when_it_is_back(
    runtime: Runtime, library: Path
) -> None:
    """A file that cannot be read (moved away for a moment, a permission slip) is a failure
    while it lasts, not a bad image for good: the next ingest that finds it encodes it, and
    its failure leaves the list."""
    from ingest.failures import failure_rows

    ingest(runtime, [library])
    photo = sorted(library.rglob("*.jpg"))[0]
    runtime.live_index()[1].delete([id_of(runtime, photo)])
    away = library.parent / "away.jpg"
    os.replace(photo, away)

    done = fix(runtime)
    assert (done.missing_points, done.encoded, done.failed) == (1, 0, 1)
    with runtime.sessions() as session:
        assert [row["reason"] for row in failure_rows(session)] == [
            "cannot read file: No such file or directory"
        ]
    os.replace(away, photo)  # back, same bytes and modification time
    again = ingest(runtime, [library])
    assert (again.unchanged, again.encoded, again.failed) == (8, 1, 0)
    with runtime.sessions() as session:
        assert failure_rows(session) == []
    assert check(runtime).clean
    assert_found(runtime, photo)


def test_orphan_points_are_deleted(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    index = runtime.live_index()[1]
    stray = str(uuid.uuid4())
    vector = np.random.default_rng(0).standard_normal(index.dim).astype(np.float32)
    index.upsert([PointRecord(stray, vector / np.linalg.norm(vector), {"path": "/nowhere.jpg"})])

    report = check(runtime)
    assert drift(report) == {"orphan_points": 1}
    assert report.findings["orphan_points"].sample == [stray]
    assert repaired_clean(runtime).orphan_points == 1
    assert index.count() == 8 and index.existing_ids([stray]) == set()
    for photo in sorted(library.rglob("*.jpg")):
        assert_found(runtime, photo)


def test_stale_payloads_are_rewritten(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    photo = sorted((library / "trips").glob("*.jpg"))[0]
    asset_id = id_of(runtime, photo)
    index = runtime.live_index()[1]
    index.set_payloads({asset_id: {"paths": ["/elsewhere/x.jpg"], "path": "/elsewhere/x.jpg"}})

    report = check(runtime)
    assert drift(report) == {"stale_payloads": 1}
    assert report.findings["stale_payloads"].sample == [asset_id]
    assert repaired_clean(runtime).stale_payloads == 1
    assert index.retrieve([asset_id])[0].payload["paths"] == [str(photo)]
    assert_found(runtime, photo)


def test_stuck_rows_are_requeued_and_encoded(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    ingest(runtime, [library])
    photo = sorted(library.rglob("*.jpg"))[4]
    asset_id = id_of(runtime, photo)
    runtime.live_index()[1].delete([asset_id])  # a worker died before storing it
    long_ago = utcnow() - timedelta(seconds=runtime.settings.reconcile_after_seconds + 60)
    with runtime.sessions() as session:
        session.execute(
            update(AssetIndexState)
            .where(AssetIndexState.asset_id == asset_id)
            .values(state=AssetState.PROCESSING, updated_at=long_ago)
        )
        session.commit()

    report = check(runtime)
    assert drift(report) == {"stuck": 1}
    assert report.findings["stuck"].sample == [asset_id]
    done = repaired_clean(runtime)
    assert (done.stuck, done.encoded) == (1, 1)
    assert fake_encoder.images_encoded == 9
    assert_found(runtime, photo)


def test_with_a_broker_repair_sends_the_work_to_the_workers(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    ingest(runtime, [library])
    version, index = runtime.live_index()
    lost = sorted(index.iter_ids())[:2]
    index.delete(lost)
    sent: list[tuple[int, list[str]]] = []
    done = repair(
        runtime.sessions, index, version, checks(runtime.settings), None,
        send=lambda version_id, ids: sent.append((version_id, ids)),
    )  # fmt: skip
    assert (done.missing_points, done.queued, done.encoded) == (2, 2, 0)
    assert sent == [(version.id, lost)] and fake_encoder.images_encoded == 8
    with runtime.sessions() as session:
        states = session.scalars(
            select(AssetIndexState.state).where(AssetIndexState.asset_id.in_(lost))
        ).all()
    assert states == [AssetState.QUEUED] * 2
    assert check(runtime).clean  # queued just now: in flight, not stuck


def test_a_fresh_processing_row_is_not_stuck(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    asset_id = id_of(runtime, sorted(library.rglob("*.jpg"))[0])
    with runtime.sessions() as session:
        session.execute(
            update(AssetIndexState)
            .where(AssetIndexState.asset_id == asset_id)
            .values(state=AssetState.PROCESSING)
        )
        session.commit()
    assert check(runtime).clean  # in flight, with its point already stored: not drift


def test_an_uploaded_file_that_is_not_an_image_is_a_failure_not_drift(
    runtime: Runtime, library: Path, pillow_images: Path
) -> None:
    ingest(runtime, [library])
    broken = Upload("broken.png", (pillow_images / "broken.png").read_bytes())
    photo = Upload("a.jpg", next(library.rglob("*.jpg")).read_bytes())
    images, rejected = sort_uploads(runtime, [broken, photo])
    assert [r.upload.filename for r in rejected] == ["broken.png"]
    accept(runtime, images, {}, rejected)
    fix(runtime)  # encodes the image; the broken file stays failed, with its failure row
    assert check(runtime).clean
    with runtime.sessions() as session:
        failure = session.scalars(select(Failure)).one()
        assert failure.path.startswith(str(runtime.settings.blobs)) and failure.reason


def test_a_missing_upload_blob_is_marked_and_failed(
    runtime: Runtime, library: Path, photos: Path
) -> None:
    ingest(runtime, [library])
    data = sorted(photos.glob("*.jpg"))[-1].read_bytes()
    accepted = accept(runtime, [Upload("upload.jpg", data)], {})
    fix(runtime)  # encodes the pending upload
    (asset_id,) = accepted.asset_ids
    assert runtime.live_index()[1].existing_ids([asset_id]) == {asset_id}
    assert check(runtime).clean
    with runtime.sessions() as session:
        blob = session.scalars(select(Location.path).where(Location.asset_id == asset_id)).one()
    assert blob.startswith(str(runtime.settings.blobs))
    os.unlink(blob)

    report = check(runtime)
    assert drift(report) == {"missing_blobs": 1}
    assert report.findings["missing_blobs"].sample == [blob]
    done = repaired_clean(runtime)
    assert (done.missing_blobs, done.unindexed) == (1, 1)
    with runtime.sessions() as session:
        location = session.scalars(select(Location).where(Location.path == blob)).one()
        failure = session.scalars(select(Failure).where(Failure.path == blob)).one()
        state = session.get(AssetIndexState, (asset_id, runtime.live_version().id))
        assert location.missing and failure.asset_id == asset_id
        assert state is not None and state.state == AssetState.FAILED
    assert runtime.live_index()[1].existing_ids([asset_id]) == set()
    for photo in sorted(library.rglob("*.jpg")):
        assert_found(runtime, photo)


def test_a_deleted_store_is_rebuilt_from_the_catalog(
    runtime: Runtime, settings: Settings, library: Path
) -> None:
    ingest(runtime, [library])
    runtime.close()
    shutil.rmtree(settings.store_path)
    encoder = FakeEncoder()
    reopened = open_ready_runtime(settings, encoder=encoder)
    try:
        report = check(reopened)
        assert drift(report) == {"missing_points": 8}
        assert (report.indexed, report.points) == (8, 0)
        done = repaired_clean(reopened)
        assert (done.missing_points, done.encoded) == (8, 8) and encoder.images_encoded == 8
        for photo in sorted(library.rglob("*.jpg")):
            assert_found(reopened, photo)
    finally:
        reopened.close()


def test_touching_a_file_whose_point_is_gone_re_encodes_it(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    ingest(runtime, [library])
    touched, moved = sorted(library.rglob("*.jpg"))[:2]
    runtime.live_index()[1].delete([id_of(runtime, touched), id_of(runtime, moved)])
    later = touched.stat().st_mtime + 100
    os.utime(touched, (later, later))
    target = library / "moved" / moved.name
    target.parent.mkdir()
    moved.rename(target)

    report = ingest(runtime, [library])  # crashed with "No point with id ..." before
    assert report.encoded == 2 and report.failed == 0
    assert fake_encoder.images_encoded == 10
    assert check(runtime).clean
    assert_found(runtime, touched)
    assert_found(runtime, target)
    again = ingest(runtime, [library])
    assert (again.encoded, again.unchanged) == (0, 8)


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=cli_env(home), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


@pytest.mark.tiny_real
def test_cli_exit_codes_and_json(tmp_path: Path, library: Path) -> None:
    home = tmp_path / "cli-home"
    done = run_cli(home, "ingest", str(library), "--json")
    assert done.returncode == 0, done.stderr
    clean = run_cli(home, "verify", "--json")
    assert clean.returncode == 0, clean.stderr
    shape = json.loads(clean.stdout)
    assert shape["clean"] is True and shape["repair"] is None and shape["after"] is None
    found = shape["found"]
    assert (found["indexed"], found["points"]) == (8, 8)
    assert set(found["drift"]) == {
        "missing_points", "orphan_points", "stale_payloads", "wrong_dimension", "stuck",
        "missing_blobs",
    }  # fmt: skip
    assert all(kind == {"count": 0, "sample": []} for kind in found["drift"].values())

    opened = open_ready_runtime(load_settings(home=home, model="clipdex-tiny"))
    try:
        lost = sorted(opened.existing_index()[1].iter_ids())[:2]
        opened.existing_index()[1].delete(lost)
    finally:
        opened.close()
    drifted = run_cli(home, "verify", "--json")
    assert drifted.returncode == 1, drifted.stderr
    report = json.loads(drifted.stdout)
    assert report["clean"] is False
    assert report["found"]["drift"]["missing_points"] == {"count": 2, "sample": lost}

    repaired = run_cli(home, "verify", "--repair", "--json")
    assert repaired.returncode == 0, repaired.stderr
    result = json.loads(repaired.stdout)
    assert result["clean"] is True and result["after"]["clean"] is True
    assert result["repair"]["missing_points"] == 2 and result["repair"]["encoded"] == 2
    text = run_cli(home, "verify")
    assert text.returncode == 0 and "clean" in text.stdout


@pytest.mark.tiny_real
@pytest.mark.parametrize("damage", ["torn-config", "truncated-vectors"])
def test_a_damaged_collection_is_set_aside_and_rebuilt_from_the_catalog(
    tmp_path: Path, library: Path, damage: str
) -> None:
    """A torn copy of the store: every command says what is wrong and the way back in one
    line, whether the collection fails to open or its vectors fail to read; `verify
    --repair` keeps the damaged files and rebuilds the same search results."""
    home = tmp_path / "cli-home"
    assert run_cli(home, "ingest", str(library)).returncode == 0
    before = run_cli(home, "search", "a photo", "--json")
    assert before.returncode == 0, before.stderr
    store = home / "store"
    (collection,) = [path for path in store.iterdir() if path.is_dir()]
    if damage == "torn-config":
        for config in collection.glob("segments/*/payload_storage/config.json"):
            config.write_text("torn")
    else:
        for chunk in collection.glob("segments/*/vector_storage/vectors/chunk_0.mmap"):
            os.truncate(chunk, 100)

    for args in (("search", "a photo"), ("verify",)):
        refused = run_cli(home, *args)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert "is damaged" in refused.stderr and "clipdex verify --repair" in refused.stderr

    repaired = run_cli(home, "verify", "--repair", "--json")
    assert repaired.returncode == 0, repaired.stderr
    result = json.loads(repaired.stdout)
    assert result["repair"]["missing_points"] == 8 and result["repair"]["encoded"] == 8
    assert result["after"]["clean"] is True
    (aside,) = [path for path in store.iterdir() if path.name.startswith(".damaged-")]
    assert collection.name in aside.name and (aside / "segments").is_dir()  # kept, not deleted
    after = run_cli(home, "search", "a photo", "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout) != []
