"""Libraries as a user meets them: rules (hidden, system folders, excludes), a renamed top
folder, an unmounted root, removal, and moves across libraries that reuse the vector."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from core.catalog.models import Library, Location
from core.runtime import Runtime
from ingest.forget import remove_library
from ingest.libraries import (
    BadLibrary,
    NoLibraries,
    UnknownLibrary,
    add_library,
    list_libraries,
)
from ingest.run import ingest
from ingest.scan import BadExclude
from search.engine import SearchService
from search.query import SearchOptions
from tests.conftest import cli_env
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


def add(runtime: Runtime, path: Path, *excludes: str, include_hidden: bool = False) -> int:
    with runtime.sessions() as session:
        library, _ = add_library(session, path, list(excludes), include_hidden)
        session.commit()
        return library.id


def indexed_paths(runtime: Runtime) -> set[str]:
    """Every path the index would show in results (all points, every path of each)."""
    index = runtime.live_index()[1]
    hits = SearchService(runtime).text("a photo", SearchOptions(limit=100))
    assert len(hits) == index.count()
    stored = index.retrieve([hit.id for hit in hits])
    return {path for point in stored for path in point.payload["paths"]}


def photos_in(folder: Path, photos: Path, names: range, sub: str = "") -> list[Path]:
    target = folder / sub
    target.mkdir(parents=True, exist_ok=True)
    made = []
    for index in names:
        source = sorted(photos.glob("*.jpg"))[index]
        made.append(Path(shutil.copy2(source, target / source.name)))
    return made


def test_hidden_and_system_folders_and_excludes_are_left_out(
    runtime: Runtime, tmp_path: Path, photos: Path
) -> None:
    root = tmp_path / "pictures"
    kept = photos_in(root, photos, range(0, 2))
    photos_in(root, photos, range(2, 3), ".hidden")
    photos_in(root, photos, range(3, 4), "@eaDir")
    photos_in(root, photos, range(4, 5), "$RECYCLE.BIN")
    photos_in(root, photos, range(5, 6), "exports")
    shutil.copy2(kept[0], root / ".dotfile.jpg")
    (root / "clip.mp4").write_bytes(b"not an image")
    add(runtime, root, "exports/")
    report = ingest(runtime, [])
    assert (report.scanned, report.new, report.excluded, report.ignored) == (2, 2, 5, 1)
    assert indexed_paths(runtime) == {str(path) for path in kept}


def test_a_path_named_inside_a_library_keeps_its_rules(
    runtime: Runtime, tmp_path: Path, photos: Path
) -> None:
    """Naming an excluded file or folder inside a library does not index it: otherwise the
    nightly library scan drops what the named run added, and every cycle encodes it again."""
    root = tmp_path / "pictures"
    kept = photos_in(root, photos, range(0, 2))
    (exported,) = photos_in(root, photos, range(2, 3), "exports")
    (thumbnail,) = photos_in(root, photos, range(3, 4), "@eaDir")
    (hidden,) = photos_in(root, photos, range(4, 5), ".hidden/deeper")
    add(runtime, root, "exports/")
    ingest(runtime, [])
    for named in (exported, root / "@eaDir", thumbnail, hidden.parent, hidden):
        report = ingest(runtime, [named])
        assert (report.scanned, report.new, report.excluded) == (0, 0, 1), named
    assert indexed_paths(runtime) == {str(path) for path in kept}
    nightly = ingest(runtime, [])
    assert (nightly.new, nightly.removed, nightly.encoded) == (0, 0, 0)
    assert ingest(runtime, [kept[0]]).unchanged == 1  # a kept file named alone: as before


def test_include_hidden_keeps_them_and_excluding_later_removes_what_was_indexed(
    runtime: Runtime, tmp_path: Path, photos: Path
) -> None:
    root = tmp_path / "pictures"
    photos_in(root, photos, range(0, 2))
    hidden = photos_in(root, photos, range(2, 3), ".thumbnails")
    exported = photos_in(root, photos, range(3, 5), "exports")
    add(runtime, root, include_hidden=True)
    assert ingest(runtime, []).new == 5
    assert {str(hidden[0]), str(exported[0])} <= indexed_paths(runtime)
    add(runtime, root, "exports/")  # the same library, new rules: hidden names skipped again
    report = ingest(runtime, [])
    assert (report.scanned, report.removed, report.excluded) == (2, 3, 2)
    left = indexed_paths(runtime)
    assert len(left) == 2 and not any(".thumbnails" in p or "exports" in p for p in left)


def test_renamed_top_folder_leaves_no_ghost_paths(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    add(runtime, library)
    assert ingest(runtime, []).encoded == 8
    renamed = library.with_name("library-2024")
    library.rename(renamed)
    add(runtime, renamed)  # the user adds the new name, then removes the old one
    report = ingest(runtime, [])
    assert (report.moved, report.new, report.encoded) == (8, 0, 0)
    assert report.missing_roots == [str(library)]
    paths = indexed_paths(runtime)
    assert len(paths) == 8 and all(p.startswith(str(renamed) + os.sep) for p in paths)
    assert all(Path(p).exists() for p in paths)
    removed = remove_library(runtime, str(library))
    assert removed.removed == 0 and runtime.live_index()[1].count() == 8
    assert indexed_paths(runtime) == paths and fake_encoder.images_encoded == 8
    with runtime.sessions() as session:
        assert [info.path for info in list_libraries(session)] == [str(renamed)]


def test_an_unmounted_root_is_reported_and_kept_until_removed(
    runtime: Runtime, tmp_path: Path, photos: Path
) -> None:
    nas, local = tmp_path / "nas", tmp_path / "local"
    on_nas = photos_in(nas, photos, range(0, 4))
    photos_in(local, photos, range(4, 6))
    shutil.copy2(on_nas[0], local / "copy-of-first.jpg")  # the same bytes in another library
    add(runtime, nas)
    add(runtime, local)
    assert ingest(runtime, []).encoded == 6
    unmounted = tmp_path / "elsewhere"
    nas.rename(unmounted)
    report = ingest(runtime, [])
    assert report.missing_roots == [str(nas)] and report.removed == 0
    assert runtime.live_index()[1].count() == 6
    nas.mkdir()  # an empty mount point is no better than none
    report = ingest(runtime, [])
    assert report.missing_roots == [str(nas)] and report.removed == 0
    assert {str(p) for p in on_nas} <= indexed_paths(runtime)
    named = ingest(runtime, [nas])  # naming the empty mount point spares it just the same
    assert named.missing_roots == [str(nas)] and named.removed == 0
    assert {str(p) for p in on_nas} <= indexed_paths(runtime)
    with runtime.sessions() as session:
        flagged = {info.path: info.missing for info in list_libraries(session)}
        gone = session.scalars(select(Location).where(Location.missing.is_(True))).all()
    assert flagged == {str(nas): True, str(local): False} and gone == []
    removed = remove_library(runtime, str(nas))
    assert (removed.paths, removed.removed) == (4, 3)  # the copy in `local` keeps one
    assert indexed_paths(runtime) == {str(p) for p in local.iterdir()}


def test_a_move_across_libraries_reuses_the_vector(
    runtime: Runtime, tmp_path: Path, photos: Path, fake_encoder: FakeEncoder
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    moving = photos_in(first, photos, range(0, 3))
    photos_in(second, photos, range(3, 5))
    add(runtime, first)
    add(runtime, second)
    assert ingest(runtime, []).encoded == 5
    target = second / "moved-here.jpg"
    moving[0].rename(target)
    report = ingest(runtime, [second])  # only the library it arrived in is scanned
    assert (report.moved, report.new, report.encoded, report.removed) == (1, 0, 0, 0)
    assert str(target) in indexed_paths(runtime)
    assert str(moving[0]) not in indexed_paths(runtime)
    moving[1].rename(second / "also-moved.jpg")  # and with every library rescanned
    report = ingest(runtime, [])
    assert (report.moved, report.encoded, report.removed) == (1, 0, 0)
    assert fake_encoder.images_encoded == 5 and runtime.live_index()[1].count() == 5


def test_bad_library_requests_are_clear_errors(runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(NoLibraries, match="library add"):
        ingest(runtime, [])
    outer = tmp_path / "outer"
    (outer / "inner").mkdir(parents=True)
    add(runtime, outer)
    with pytest.raises(BadLibrary, match="nest"):
        add(runtime, outer / "inner")
    with pytest.raises(BadLibrary, match="not a folder"):
        add(runtime, tmp_path / "absent")
    with pytest.raises(BadExclude, match="invalid exclude"):
        add(runtime, outer, "!")
    with pytest.raises(UnknownLibrary):
        remove_library(runtime, "/no/such/library")
    with pytest.raises(BadLibrary, match="not a usable path"):
        add(runtime, tmp_path / "lone\ud800surrogate")


def test_ingesting_a_folder_that_holds_a_library_uses_its_rules(
    runtime: Runtime, tmp_path: Path, photos: Path
) -> None:
    parent = tmp_path / "disk"
    photos_in(parent, photos, range(0, 2))
    inner = parent / "phone"
    photos_in(inner, photos, range(2, 4))
    photos_in(inner, photos, range(4, 5), "cache")
    add(runtime, inner, "cache/")
    report = ingest(runtime, [parent])  # a plain folder, as before, with the library inside
    assert (report.scanned, report.excluded) == (4, 1)


def clipdex(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=cli_env(home), capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.tiny_real
def test_library_commands(tmp_path: Path, library: Path) -> None:
    home = tmp_path / "home"
    none = clipdex(home, "ingest")
    assert none.returncode == 2 and "library add" in none.stderr
    added = clipdex(home, "library", "add", str(library), "--exclude", "trips/", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["excludes"] == ["trips/"]
    ran = clipdex(home, "ingest")
    assert ran.returncode == 0, ran.stderr
    assert "4 scanned" in ran.stdout and "1 excluded" in ran.stdout
    listed = json.loads(clipdex(home, "library", "list", "--json").stdout)
    assert [(i["path"], i["missing"], i["last_scan"]["scanned"]) for i in listed] == [
        (str(library), False, 4)
    ]
    shutil.rmtree(library)
    listed_again = clipdex(home, "library", "list")
    assert "MISSING ROOT" in listed_again.stdout
    status = clipdex(home, "status")
    assert status.returncode == 0 and f"library:   1  {library}" in status.stdout
    assert "MISSING ROOT" in status.stdout
    assert "MISSING ROOT" in clipdex(home, "failures").stderr
    kept = clipdex(home, "ingest")
    assert "0 removed" in kept.stdout and "is missing" in kept.stderr
    removed = clipdex(home, "library", "remove", str(library))
    assert removed.returncode == 0 and "4 images left the index" in removed.stdout
    unknown = clipdex(home, "library", "remove", str(library))
    assert unknown.returncode == 2 and "no library" in unknown.stderr


def test_library_endpoints(runtime: Runtime, library: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from clipdex.http import create_app

    keys = {"api_write_keys": [SecretStr("w")], "api_read_keys": [SecretStr("r")]}
    keys["allowed_image_roots"] = [library.parent]
    settings = runtime.settings.model_copy(update=keys)
    read, write = {"X-API-Key": "r"}, {"X-API-Key": "w"}
    with TestClient(create_app(settings, runtime)) as client:
        body = {"path": str(library), "excludes": ["trips/"]}
        assert client.post("/v1/libraries", json=body, headers=read).status_code == 403
        made = client.post("/v1/libraries", json=body, headers=write)
        assert made.status_code == 201, made.text
        library_id = made.json()["id"]
        bad = client.post("/v1/libraries", json={"path": str(tmp_path / "absent")}, headers=write)
        assert bad.status_code == 422 and "not a folder" in bad.json()["detail"]
        outside = client.post("/v1/libraries", json={"path": "/"}, headers=write)
        assert outside.status_code == 422 and "ALLOWED_IMAGE_ROOTS" in outside.json()["detail"]
        scan = client.post(f"/v1/libraries/{library_id}/scan", headers=write)
        assert scan.status_code == 202, scan.text
        deadline = time.monotonic() + 60
        while (listed := client.get("/v1/libraries", headers=read).json())[0]["last_scan"] is None:
            assert time.monotonic() < deadline, "the scan did not finish"
            time.sleep(0.1)
        assert listed[0]["last_scan"]["scanned"] == 4 and listed[0]["missing"] is False
        assert client.post("/v1/libraries/999/scan", headers=write).status_code == 404
        gone = client.delete(f"/v1/libraries/{library_id}", headers=write)
        assert gone.status_code == 200 and gone.json()["removed"] == 4
        assert client.get("/v1/libraries", headers=read).json() == []


def test_photos_inside_the_home_are_a_library_but_its_own_folders_are_not(
    runtime: Runtime, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``CLIPDEX_HOME=/data`` with photos at ``/data/photos`` (as a compose volume has it) is
    a library like any other; a library left inside the blob root (added before that was
    refused, or before the blob root moved) is skipped by a full rescan, with a warning,
    and the other libraries are scanned."""
    from ingest.libraries import own_folders

    settings = runtime.settings
    inside_home = settings.home / "photos"
    photos_in(inside_home, photos, range(3))
    stale = settings.blobs / "old-library"
    photos_in(stale, photos, range(3, 5))
    with runtime.sessions() as session:
        add_library(session, inside_home, [], False, own_folders(settings))
        session.add(Library(path=str(stale), excludes=[], include_hidden=False))
        session.commit()
    report = ingest(runtime, [])
    assert (report.scanned, report.new) == (3, 3)
    assert {Path(p).parent for p in indexed_paths(runtime)} == {inside_home}
    assert "inside clipdex's own folders: not scanned" in caplog.text
