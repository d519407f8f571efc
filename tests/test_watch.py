"""Watching: files created, modified, moved and deleted in a watched library are searchable, or
gone, within a bounded time (the test polls against a deadline), with the tiny real model."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clipdex.catalog import open_ready_runtime
from core.runtime import Runtime
from core.settings import Settings
from ingest.libraries import add_library
from ingest.run import ingest
from ingest.watch import LibraryWatcher, WatchedLibrary, folders_to_scan
from search.engine import SearchService
from search.query import SearchOptions

DEADLINE = 60.0  # seconds; a batch is ingested within about a second of the last write


def wait_for(condition: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > DEADLINE:
            pytest.fail(f"not within {DEADLINE:.0f}s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def indexed_paths(runtime: Runtime) -> set[str]:
    index = runtime.live_index()[1]
    hits = SearchService(runtime).text("a photo", SearchOptions(limit=100))
    return {p for point in index.retrieve([h.id for h in hits]) for p in point.payload["paths"]}


def top_hit(runtime: Runtime, image: Path) -> str | None:
    hits = SearchService(runtime).image(image.read_bytes(), SearchOptions(limit=1))
    return hits[0].path if hits else None


@pytest.fixture
def real_runtime(settings: Settings) -> Iterator[Runtime]:
    opened = open_ready_runtime(settings)  # the tiny open_clip model, not a fake
    yield opened
    opened.close()


@pytest.mark.tiny_real
def test_created_modified_moved_and_deleted_files_follow_within_seconds(
    real_runtime: Runtime, tmp_path: Path, photos: Path
) -> None:
    runtime = real_runtime
    sources = sorted(photos.glob("*.jpg"))
    root = tmp_path / "watched"
    root.mkdir()
    first, second = (Path(shutil.copy2(s, root / s.name)) for s in sources[:2])
    with runtime.sessions() as session:
        add_library(session, root, ["drafts/"], include_hidden=False)
        session.commit()
    ingested: list[list[Path]] = []

    def ingest_paths(paths: list[Path]) -> None:
        ingested.append(paths)
        ingest(runtime, paths)

    watcher = LibraryWatcher(runtime.sessions, ingest_paths, debounce_ms=300, rescan_seconds=0)
    watcher.start()
    try:
        wait_for(lambda: indexed_paths(runtime) == {str(first), str(second)}, "first rescan")
        (root / "new").mkdir()
        created = Path(shutil.copy2(sources[2], root / "new" / "created.jpg"))
        wait_for(lambda: top_hit(runtime, created) == str(created), "created file searchable")
        shutil.copyfile(sources[3], first)  # new bytes at a known path
        wait_for(lambda: top_hit(runtime, first) == str(first), "modified file searchable")
        moved = root / "new" / "moved.jpg"
        second.rename(moved)
        wait_for(
            lambda: str(moved) in (paths := indexed_paths(runtime)) and str(second) not in paths,
            "moved file at its new path only",
        )
        created.unlink()
        wait_for(lambda: str(created) not in indexed_paths(runtime), "deleted file gone")
        (root / ".hidden").mkdir()
        (root / "drafts").mkdir()
        shutil.copy2(sources[4], root / ".hidden" / "secret.jpg")
        shutil.copy2(sources[4], root / "drafts" / "draft.jpg")
        settled = len(ingested)
        shutil.copy2(sources[5], root / "last.jpg")  # a kept file after the left-out ones
        wait_for(lambda: str(root / "last.jpg") in indexed_paths(runtime), "last file indexed")
    finally:
        watcher.stop()
    assert indexed_paths(runtime) == {str(first), str(moved), str(root / "last.jpg")}
    later = [p for batch in ingested[settled:] for p in batch]
    assert all(".hidden" not in str(p) and "drafts" not in str(p) for p in later)


def test_folders_to_scan_for_a_batch(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "a" / "b").mkdir(parents=True)
    (root / "@eaDir").mkdir()
    library = WatchedLibrary(root, ("*.tmp",))
    changed = [
        root / "a" / "x.jpg",  # its folder
        root / "a" / "b" / "y.jpg",  # covered by a/
        root / "gone" / "deep" / "z.jpg",  # a folder that no longer exists: the root
        root / "@eaDir" / "thumb.jpg",  # a system folder: nothing
        root / "a" / "part.tmp",  # excluded: nothing
        tmp_path / "elsewhere.jpg",  # in no library
    ]
    assert folders_to_scan(map(str, changed), [library]) == [root]
    assert folders_to_scan(map(str, changed[:2]), [library]) == [root / "a"]
    assert folders_to_scan(map(str, changed[3:]), [library]) == []
    home = root / "a" / "clipdex-home"  # a home inside a library: an upload changes nothing
    upload = home / "blobs" / "ab" / "ab12"
    upload.parent.mkdir(parents=True)
    assert folders_to_scan([str(upload)], [library]) == [upload.parent]  # without ``own``
    assert folders_to_scan([str(upload)], [library], [home]) == []
    assert folders_to_scan(map(str, [upload, *changed[:2]]), [library], [home]) == [root / "a"]


def test_a_failed_round_is_logged_and_the_watch_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """inotify's watch limit, an unmounted root or the catalog away must not end the watch
    thread for good (in `serve --watch` nobody would notice)."""
    import ingest.watch as watch

    calls: list[float] = []

    def flaky(_sessions: object) -> list[WatchedLibrary]:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise OSError("OS file watch limit reached.")
        return []

    monkeypatch.setattr(watch, "watched_libraries", flaky)
    monkeypatch.setattr(watch, "RETRY_S", 0.05)
    watcher = LibraryWatcher(None, lambda paths: None, 100, 0)  # type: ignore[arg-type]
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while len(calls) < 2:
            assert time.monotonic() < deadline, "the watch did not go on after a failed round"
            time.sleep(0.01)
    finally:
        watcher.stop()
    assert "watching the libraries failed" in caplog.text


def test_a_watch_ignores_what_clipdex_writes_in_a_home_inside_a_library(tmp_path: Path) -> None:
    """Each catalog write, upload or store flush in a home inside a library would start a
    rescan of the home, whose ingest writes again; photos kept in the home are watched."""
    from clipdex.cli.libraries import clipdex_paths
    from core.settings import load_settings

    root = tmp_path / "lib"
    home = root / "home"
    (home / "photos").mkdir(parents=True)
    settings = load_settings(home=home, model="clipdex-tiny")
    own = clipdex_paths(settings)
    writes = [
        home / "catalog.db", home / "catalog.db-journal", home / "catalog.db-wal",
        home / "serve.json", settings.blobs / "ab" / "ab12", home / "store" / "shard" / "wal",
    ]  # fmt: skip
    library = WatchedLibrary(root)
    assert folders_to_scan(map(str, writes), [library]) == [home]  # what it did
    assert folders_to_scan(map(str, writes), [library], own) == []
    photo = home / "photos" / "a.jpg"
    assert folders_to_scan([str(photo)], [library], own) == [photo.parent]
