"""Reindex to another model from the catalog, index version states, activate and drop."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import select

from clipdex.catalog import open_ready_runtime
from core.catalog.index_versions import VersionRefused, all_versions
from core.catalog.models import AssetIndexState, AssetState
from core.encoder import DeclaredModel, Encoder, ModelIdentity, ModelSpec, OpenClipEncoder
from core.runtime import Runtime, decode_limits
from core.settings import load_settings
from core.store.edge import EdgeStore
from ingest.batch import index_assets
from ingest.queueing import SendRefused
from ingest.reindex import ReindexPlan, Workers, reindex
from ingest.run import ingest
from search.engine import SearchService, target_for
from tests.fakes import FAKE_PREPROCESS, FakeEncoder


class OtherFake(FakeEncoder):
    """Another 'model': its own identity, vectors rotated; may die after some images."""

    dim = 48

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after

    @property
    def declared(self) -> DeclaredModel:
        return DeclaredModel("fake2", "none")

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity("fake2", "none", "0", FAKE_PREPROCESS.as_dict(), self.dim)

    def encode_images(self, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
        if self.fail_after is not None and self.images_encoded + len(pixels) > self.fail_after:
            raise KeyboardInterrupt("killed mid-run")
        return np.roll(super().encode_images(pixels), 5, axis=1)


def plan_for(runtime: Runtime, encoder: Encoder, swap: bool = True) -> ReindexPlan:
    limits = decode_limits(runtime.settings, encoder.preprocess)
    return ReindexPlan(encoder, limits, batch_size=4, decode_workers=2, swap=swap)


def indexed(runtime: Runtime, version_id: int) -> set[str]:
    with runtime.sessions() as session:
        return set(
            session.scalars(
                select(AssetIndexState.asset_id).where(
                    AssetIndexState.index_version_id == version_id,
                    AssetIndexState.state == AssetState.INDEXED,
                )
            )
        )


def points(runtime: Runtime, version_id: int) -> set[str]:
    return set(runtime.index_of(runtime.version(version_id)).iter_ids())


@pytest.mark.unit
def test_reindex_builds_an_exact_version_and_swaps(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    old = runtime.live_version()
    other = OtherFake()
    report = reindex(runtime, plan_for(runtime, other, swap=False))
    assert report.state == "ready" and not report.swapped
    assert indexed(runtime, report.version) == points(runtime, report.version)
    assert indexed(runtime, report.version) == indexed(runtime, old.id)
    assert other.images_encoded == len(indexed(runtime, old.id)) == report.encoded

    new, retired = runtime.activate(report.version)
    assert new.state == "live" and retired is not None and retired.id == old.id
    with runtime.sessions() as session:
        states = {v.id: (v.state, v.active) for v in all_versions(session)}
    assert states == {old.id: ("retired", False), new.id: ("live", True)}

    # Rollback is the same command; a live version cannot be dropped, a retired one can.
    runtime.activate(old.id)
    with pytest.raises(VersionRefused):
        runtime.drop(old.id)
    runtime.drop(new.id)
    with runtime.sessions() as session:
        assert [v.id for v in all_versions(session)] == [old.id]


@pytest.mark.unit
def test_catch_up_follows_changes_to_the_live_version(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    first = reindex(runtime, plan_for(runtime, OtherFake(), swap=False))
    # The library changes while the new version waits: one file gone, one new one.
    gone = next(library.rglob("*.jpg"))
    extra = library / "extra.jpg"
    shutil.copy2(gone, extra)
    gone.unlink()
    rotate(extra)
    ingest(runtime, [library])
    live = runtime.live_version()
    again = reindex(runtime, plan_for(runtime, OtherFake()))
    assert again.version == first.version and again.swapped
    assert indexed(runtime, again.version) == points(runtime, again.version)
    assert indexed(runtime, again.version) == indexed(runtime, live.id)


def rotate(path: Path) -> None:
    """Make a copied file's bytes differ, so it is a new asset."""
    from PIL import Image

    with Image.open(path) as image:
        rotated = image.rotate(90, expand=True)
    rotated.save(path, "JPEG")


@pytest.mark.unit
def test_interrupted_reindex_resumes_without_encoding_twice(
    runtime: Runtime, library: Path
) -> None:
    ingest(runtime, [library])
    live = runtime.live_version()
    total = len(indexed(runtime, live.id))
    dying = OtherFake(fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        reindex(runtime, plan_for(runtime, dying))
    assert dying.images_encoded == 4
    with runtime.sessions() as session:
        building = [v for v in all_versions(session) if v.state == "building"]
    assert len(building) == 1
    resumed = OtherFake()
    report = reindex(runtime, plan_for(runtime, resumed))
    assert report.resumed and report.version == building[0].id and report.swapped
    assert dying.images_encoded + resumed.images_encoded == total
    assert indexed(runtime, report.version) == points(runtime, report.version)
    assert indexed(runtime, report.version) == indexed(runtime, live.id)


@pytest.mark.unit
def test_ingest_during_a_build_writes_to_the_building_version(
    runtime: Runtime, library: Path
) -> None:
    """Assets ingested while a version builds get pending rows there at once; assets deleted
    leave it (point and row); the resumed reindex encodes each new asset once."""
    from core.catalog.models import Location

    ingest(runtime, [library])
    dying = OtherFake(fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        reindex(runtime, plan_for(runtime, dying))
    with runtime.sessions() as session:
        [building] = [v for v in all_versions(session) if v.state == "building"]
        stored = sorted(indexed(runtime, building.id))
        gone = Path(
            session.scalars(select(Location.path).where(Location.asset_id == stored[0])).one()
        )
    assert stored and stored[0] in points(runtime, building.id)
    extra = library / "extra.jpg"
    shutil.copy2(gone, extra)
    rotate(extra)
    gone.unlink()
    live = runtime.live_version()
    before = indexed(runtime, live.id)
    ingest(runtime, [library])
    [added] = indexed(runtime, live.id) - before
    with runtime.sessions() as session:
        rows = {
            asset_id: state
            for asset_id, state in session.execute(
                select(AssetIndexState.asset_id, AssetIndexState.state).where(
                    AssetIndexState.index_version_id == building.id
                )
            )
        }
    assert rows[added] == AssetState.PENDING  # written to the building version by the ingest
    assert stored[0] not in rows and stored[0] not in points(runtime, building.id)

    resumed = OtherFake()
    report = reindex(runtime, plan_for(runtime, resumed))
    assert report.version == building.id and report.removed == 0  # nothing left to catch up
    assert added in indexed(runtime, report.version)
    assert indexed(runtime, report.version) == points(runtime, report.version)
    assert indexed(runtime, report.version) == indexed(runtime, live.id)
    assert resumed.images_encoded == len(indexed(runtime, live.id)) - (len(stored) - 1)


@pytest.mark.tiny_real
def test_reindex_to_vit_b_32_ranks_like_a_fresh_index(
    tmp_path: Path, photos: Path, random_vit_checkpoint: Path
) -> None:
    library = tmp_path / "photos"
    library.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:12]:
        shutil.copy2(source, library / source.name)
    tiny = load_settings(home=tmp_path / "a", model="clipdex-tiny", batch_size=8, device="cpu")
    vit = load_settings(
        home=tmp_path / "b", model="ViT-B-32", pretrained=str(random_vit_checkpoint),
        batch_size=8, device="cpu",
    )  # fmt: skip
    encoder = OpenClipEncoder(ModelSpec.from_settings(vit))
    query = "a dog on the beach"

    fresh = open_ready_runtime(vit, encoder=encoder)
    try:
        ingest(fresh, [library])
        expected = [hit.id for hit in SearchService(fresh).text(query)]
    finally:
        fresh.close()

    runtime = open_ready_runtime(tiny)
    try:
        ingest(runtime, [library])
        old = runtime.live_version()
        report = reindex(runtime, plan_for(runtime, encoder))
        assert report.swapped and report.indexed == 12 == report.points
        assert indexed(runtime, report.version) == indexed(runtime, old.id)
        new = runtime.version(report.version)
        target = target_for(runtime, new)
        hits = SearchService(runtime, lambda: target).text(query)
        assert [hit.id for hit in hits] == expected
        runtime.activate(old.id)
        assert runtime.catalog_live() is not None
        assert runtime.catalog_live().id == old.id  # type: ignore[union-attr]
    finally:
        runtime.close()


@pytest.mark.tiny_real
def test_cli_index_list_reindex_activate_and_drop(tmp_path: Path, photos: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import cli_env

    library = tmp_path / "photos"
    library.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:4]:
        shutil.copy2(source, library / source.name)
    env = cli_env(tmp_path / "home", CLIPDEX_DEVICE="cpu")

    def clipdex(*args: str, code: int = 0) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "clipdex", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == code, done.stderr
        return done.stdout

    clipdex("ingest", str(library))
    report = json.loads(clipdex("reindex", "--model", "ViT-B-32", "--pretrained", "random",
                                "--no-swap", "--json"))  # fmt: skip
    assert report["state"] == "ready" and report["indexed"] == 4 == report["points"]
    rows = {row["id"]: row for row in json.loads(clipdex("index", "list", "--json"))}
    assert rows[report["version"]]["state"] == "ready" and rows[report["version"]]["dim"] == 512
    assert rows[report["version"]]["assets"] == {"indexed": 4}
    clipdex("index", "drop", "1", code=2)  # the live one is refused
    clipdex("index", "activate", str(report["version"]))
    clipdex("index", "activate", "1")  # rollback
    held = EdgeStore(tmp_path / "home" / "store")  # `clipdex serve`, say, holds the store
    try:
        clipdex("index", "drop", str(report["version"]), code=2)
    finally:
        held.close()
    assert len(json.loads(clipdex("index", "list", "--json"))) == 2  # refused: nothing dropped
    clipdex("index", "drop", str(report["version"]))
    assert [row["id"] for row in json.loads(clipdex("index", "list", "--json"))] == [1]


@pytest.mark.tiny_real
def test_reindex_killed_with_sigkill_resumes_exact(
    tmp_path: Path, photos: Path, random_vit_checkpoint: Path
) -> None:
    import json
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env

    library = tmp_path / "photos"
    library.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:20]:
        shutil.copy2(source, library / source.name)
    home = tmp_path / "home"
    env = cli_env(home, CLIPDEX_DEVICE="cpu", CLIPDEX_BATCH_SIZE="2")
    command = [sys.executable, "-m", "clipdex"]
    subprocess.run([*command, "ingest", str(library)], env=env, check=True, capture_output=True)
    reindex_args = ["reindex", "--model", "ViT-B-32", "--pretrained", str(random_vit_checkpoint)]

    def indexed_new() -> int:
        with sqlite3.connect(home / "catalog.db") as db:
            row = db.execute(
                "SELECT count(*) FROM asset_index_states WHERE index_version_id = 2 "
                "AND state = 'indexed'"
            ).fetchone()
        return int(row[0])

    child = subprocess.Popen(
        [*command, *reindex_args, "--json"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        try:
            if indexed_new() >= 4:
                break
        except sqlite3.OperationalError:
            pass  # table or version not there yet
        time.sleep(0.02)
    assert child.poll() is None, "the reindex finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = indexed_new()
    assert 4 <= before < 20

    done = subprocess.run(
        [*command, *reindex_args, "--json"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["resumed"] and report["swapped"] and report["version"] == 2
    assert report["indexed"] == 20 == report["points"]
    # Only what the killed run had not stored was encoded again: nothing twice.
    assert report["encoded"] == 20 - before - report["reused"]


@pytest.mark.unit
def test_a_broker_refusing_a_later_send_does_not_end_a_reindex_through_workers(
    runtime: Runtime, library: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker restarts while a reindex feeds the workers: the refused rows go back to
    pending and are sent again on a timer; every image is encoded once and the swap happens."""
    ingest(runtime, [library])
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other  # the workers' model for the new version
    calls, sent = 0, []

    def flaky(version_id: int, ids: list[str]) -> None:  # the broker, and a worker behind it
        nonlocal calls
        calls += 1
        if calls in (2, 3):
            raise SendRefused("cannot send work to the broker at redis://b:6379/0: refused")
        sent.extend(ids)
        index_assets(runtime, version_id, ids)

    workers = Workers(flaky, task_batch_size=3, reconcile_after=60, poll_seconds=0.01,
                      retry_seconds=0.05)  # fmt: skip
    report = reindex(runtime, replace(plan_for(runtime, other), workers=workers))
    assert report.swapped and report.encoded == 8 == len(sent) == len(set(sent))
    assert other.images_encoded == 8
    warned = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(warned) == 2 and "sends the rest again" in warned[0]


@pytest.mark.unit
def test_a_broker_refusing_the_first_send_ends_the_reindex_at_once(
    runtime: Runtime, library: Path
) -> None:
    ingest(runtime, [library])
    other = OtherFake()

    def down(_version_id: int, _ids: list[str]) -> None:
        raise SendRefused("cannot reach the broker at redis://b:6379/0 (CLIPDEX_BROKER_URL)")

    workers = Workers(down, task_batch_size=3, reconcile_after=60, poll_seconds=0.01)
    with pytest.raises(SendRefused, match="cannot reach the broker"):
        reindex(runtime, replace(plan_for(runtime, other), workers=workers))
    assert other.images_encoded == 0
