"""A full disk stops writes cleanly: one line and exit 2 below the free-space floor, nothing
marked indexed that is not stored, and a re-run after space is freed converges to an exact
index. On a real small tmpfs (mounting one needs root, which CI has)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.diskspace import DiskFull
from core.runtime import Runtime
from core.settings import Settings
from ingest import run as ingest_run
from tests.conftest import cli_env

MIB = 1024 * 1024
FLOOR = 200 * MIB  # well above what opening the embedded store may map (WAL segments, chunks)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def clipdex(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(home, CLIPDEX_MIN_FREE_BYTES=str(FLOOR))
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args], env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip


def fill(disk: Path, leave: int) -> Path:
    """Write a filler file so that about ``leave`` bytes stay free."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as out:
        out.truncate(0)
        chunk = b"\0" * MIB
        for _ in range(max(0, (free - leave) // MIB)):
            out.write(chunk)
    return filler


@pytest.mark.tiny_real
def test_below_the_floor_ingest_stops_with_one_line_and_a_rerun_converges(
    small_disk: Path, photos: Path, tmp_path: Path
) -> None:
    home, library = small_disk / "home", tmp_path / "library"
    library.mkdir()
    jpgs = sorted(photos.glob("*.jpg"))
    for source in jpgs[:4]:
        shutil.copy2(source, library / source.name)
    assert clipdex(home, "ingest", str(library)).returncode == 0

    for source in jpgs[4:10]:
        shutil.copy2(source, library / source.name)
    filler = fill(small_disk, leave=FLOOR - 2 * MIB)
    refused = clipdex(home, "ingest", str(library))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "free" in refused.stderr
    assert "Traceback" not in refused.stderr

    status = clipdex(home, "status", "--json")  # reads go on: searching writes nothing
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["indexed"] == report["points"] == 4 and report["pending"] == 0
    assert report["last_run"]["counts"]["encoded"] == 4  # the refused run registered nothing
    found = clipdex(home, "search", "a photo", "--json")
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == 4

    filler.unlink()
    assert clipdex(home, "ingest", str(library)).returncode == 0
    report = json.loads(clipdex(home, "status", "--json").stdout)
    assert report["indexed"] == report["points"] == 10


@pytest.mark.unit
def test_space_running_out_mid_run_leaves_nothing_marked_indexed_that_is_not_stored(
    runtime: Runtime, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The floor is checked before the run and before every batch is stored; the check before
    the second batch finds it crossed."""
    checks = 0
    real_check = ingest_run.check_free_space

    def running_out(paths: list[Path], floor: int) -> None:
        nonlocal checks
        checks += 1
        if checks > 2:
            raise DiskFull("only 3 MiB free on the disk holding the home")
        real_check(paths, floor)

    monkeypatch.setattr(ingest_run, "check_free_space", running_out)
    with pytest.raises(DiskFull):
        ingest_run.ingest(runtime, [library])
    _, index = runtime.live_index()
    with runtime.sessions() as session:
        from sqlalchemy import select

        from core.catalog.models import AssetIndexState, AssetState

        indexed = set(
            session.scalars(
                select(AssetIndexState.asset_id).where(AssetIndexState.state == AssetState.INDEXED)
            )
        )
    assert len(indexed) == runtime.settings.batch_size  # the first batch made it
    assert indexed == set(index.iter_ids())

    monkeypatch.setattr(ingest_run, "check_free_space", real_check)
    report = ingest_run.ingest(runtime, [library])
    assert report.encoded == 8 - len(indexed)
    assert index.count() == 8


@pytest.mark.unit
def test_below_the_floor_a_server_searches_but_takes_no_upload(
    settings: Settings, library: Path
) -> None:
    """A server (re)started on a nearly full disk: searches answer; an upload is refused with
    the reason, and nothing of it is stored."""
    from fastapi.testclient import TestClient

    from clipdex.catalog import open_ready_runtime
    from clipdex.http import create_app
    from core.settings import load_settings
    from tests.fakes import FakeEncoder

    first = open_ready_runtime(settings, encoder=FakeEncoder())
    try:
        ingest_run.ingest(first, [library])
    finally:
        first.close()
    full = load_settings(home=settings.home, model="clipdex-tiny", min_free_bytes=2**40)
    runtime = open_ready_runtime(full, encoder=FakeEncoder())  # every disk has less than 1 TiB
    try:
        with TestClient(create_app(full, runtime)) as client:
            found = client.get("/v1/search", params={"q": "a photo", "limit": 20})
            assert found.status_code == 200 and len(found.json()["hits"]) == 8
            photo = sorted(library.rglob("*.jpg"))[0]
            refused = client.post(
                "/v1/images", files={"files": ("new.jpg", photo.read_bytes()[:-10] + b"0123456789")}
            )
            assert (
                refused.status_code == 503 and "CLIPDEX_MIN_FREE_BYTES" in refused.json()["detail"]
            )
        assert not any(path.is_file() for path in full.blobs.rglob("*"))
    finally:
        runtime.close()
