"""A folder a scan cannot list is there but unknown, not deleted: its paths stay indexed (a
permission slip on a NAS share must not empty the index), and a failure a later scan no
longer meets (the folder readable again, a bad name renamed) leaves the failure list."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.catalog.models import Location
from core.runtime import Runtime
from ingest.failures import failure_rows
from ingest.run import ingest
from search.engine import SearchService

pytestmark = pytest.mark.unit


@pytest.fixture
def unlistable(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Folders (by path) that ``os.scandir`` refuses, as ``chmod 000`` does for a user who
    is not root (the tests may run as root, whom permissions do not stop)."""
    refused: set[str] = set()
    real = os.scandir

    def scandir(path: str) -> object:
        if str(path) in refused:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    yield refused


def live_paths(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        query = select(func.count()).select_from(Location).where(Location.missing.is_(False))
        return int(session.scalar(query) or 0)


def failures(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        return [(row["path"], row["reason"]) for row in failure_rows(session)]


@pytest.mark.parametrize("which", ["subfolder", "root"])
def test_a_folder_that_cannot_be_listed_keeps_its_paths(
    runtime: Runtime, library: Path, unlistable: set[str], which: str
) -> None:
    first = ingest(runtime, [library])
    assert first.encoded == 8 and live_paths(runtime) == 8
    hits = {hit.id for hit in SearchService(runtime).text("a photo")}
    locked = library / "trips" if which == "subfolder" else library
    unlistable.add(str(locked))

    refused = ingest(runtime, [library])
    assert (refused.failed, refused.removed) == (1, 0)
    assert live_paths(runtime) == 8 and runtime.live_index()[1].count() == 8
    assert {hit.id for hit in SearchService(runtime).text("a photo")} == hits
    assert failures(runtime) == [(str(locked), "cannot list folder: Permission denied")]

    unlistable.clear()
    again = ingest(runtime, [library])
    assert (again.failed, again.removed, again.encoded, again.unchanged) == (0, 0, 0, 8)
    assert failures(runtime) == []  # resolved: it leaves the list


def test_a_failure_the_next_scan_does_not_meet_leaves_the_list(
    runtime: Runtime, library: Path, unlistable: set[str]
) -> None:
    """A folder that cannot be listed and a name that is not UTF-8: each is a failure while
    it lasts; renaming, deleting or fixing it clears it, and other failures stay."""
    bad_name = os.path.join(os.fsencode(library), b"caf\xe9.jpg")
    source = sorted(library.rglob("*.jpg"))[0]
    with open(bad_name, "wb") as handle:
        handle.write(source.read_bytes())
    (library / "locked").mkdir()
    unlistable.add(str(library / "locked"))
    broken = library / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    ingest(runtime, [library])
    assert sorted(path for path, _ in failures(runtime)) == sorted(
        [f"{library}/caf\\xe9.jpg", str(broken), str(library / "locked")]
    )

    os.rename(bad_name, library / "cafe.jpg")
    shutil.rmtree(library / "locked")
    unlistable.clear()
    ingest(runtime, [library])
    assert [path for path, _ in failures(runtime)] == [str(broken)]  # still broken: it stays


def test_hundreds_of_files_that_cannot_be_stated_keep_their_paths(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`chmod -R 644` on a big folder: it lists, but no file in it can be stat'ed. More spared
    paths than one SQL query can hold (SQLite's expression depth was exceeded at ~500)."""
    from PIL import Image

    folder = tmp_path / "big"
    folder.mkdir()
    for number in range(600):
        Image.new("RGB", (8, 8), (number % 256, number // 256, 7)).save(folder / f"{number}.png")
    first = ingest(runtime, [folder])
    assert first.encoded == 600
    blocked = {str(path) for path in folder.iterdir()}
    real = os.lstat

    def lstat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path) in blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", lstat)
    refused = ingest(runtime, [folder])
    assert (refused.failed, refused.removed) == (600, 0)
    assert live_paths(runtime) == 600

    monkeypatch.setattr(os, "lstat", real)
    (folder / "0.png").unlink()  # and one really deleted meanwhile
    again = ingest(runtime, [folder])
    assert (again.failed, again.removed, again.unchanged) == (0, 1, 599)
    assert failures(runtime) == []


def test_spared_paths_hold_what_lies_under_them() -> None:
    from ingest.spared import Spared

    spared = Spared([Path("/a/b"), Path("/a/b/c"), Path("/a/b-c"), Path("/z/file.jpg")])
    assert len(spared) == 3  # /a/b/c lies under /a/b
    for path in ("/a/b", "/a/b/x.jpg", "/a/b/c/d", "/a/b-c/x", "/z/file.jpg"):
        assert spared.holds(path), path
    for path in ("/a/bc", "/a/b-d/x", "/a", "/z/file.jpg2", "/y"):
        assert not spared.holds(path), path
