"""Incremental ingest: what a user sees when files are added, copied, moved, edited or deleted."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from core.catalog.models import Failure
from core.runtime import Runtime
from core.settings import Settings
from core.store.base import SearchFilter
from ingest import hashing as hashing_module
from ingest.run import ingest
from search.engine import SearchService
from search.query import SearchOptions
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


def points(runtime: Runtime) -> int:
    return runtime.live_index()[1].count()


def paths_of(runtime: Runtime, asset_id: str) -> list[str]:
    hits = runtime.live_index()[1].retrieve([asset_id])
    return list(hits[0].payload["paths"]) if hits else []


def test_first_run_indexes_everything_and_search_finds_it(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    report = ingest(runtime, [library])
    assert (report.scanned, report.new, report.encoded, report.failed) == (8, 8, 8, 0)
    assert points(runtime) == 8 and fake_encoder.images_encoded == 8
    photo = sorted(library.rglob("*.jpg"))[0]
    hits = SearchService(runtime).image(photo, SearchOptions(limit=3))
    assert hits[0].path == str(photo) and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_unchanged_files_are_not_hashed_or_encoded(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(runtime, [library])
    hashed: list[Path] = []
    real_hash = hashing_module.sha256_of_file
    monkeypatch.setattr(
        hashing_module, "sha256_of_file", lambda p: hashed.append(p) or real_hash(p)
    )
    report = ingest(runtime, [library])
    assert (report.unchanged, report.new, report.encoded) == (8, 0, 0)
    assert hashed == [] and fake_encoder.images_encoded == 8


def test_copy_move_modify_delete(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    ingest(runtime, [library])
    photos = sorted(library.rglob("*.jpg"))
    copied, moved, modified, deleted = photos[0], photos[1], photos[2], photos[3]

    copy_target = library / "trips" / "copy-of-first.jpg"
    shutil.copy2(copied, copy_target)
    move_target = library / "renamed" / "moved.jpg"
    move_target.parent.mkdir()
    moved.rename(move_target)
    with Image.open(modified) as image:
        image.rotate(90, expand=True).save(modified, quality=90)
    deleted.unlink()

    report = ingest(runtime, [library])
    assert report.duplicates == 1 and report.moved == 1
    assert report.modified == 1 and report.removed == 2  # the deleted and the edited old bytes
    assert report.encoded == 1  # only the edited file is re-encoded
    assert fake_encoder.images_encoded == 9
    assert points(runtime) == 7  # 8 - deleted - old version of edited + new version

    by_path = {
        hit.path: hit for hit in SearchService(runtime).text("anything", SearchOptions(limit=50))
    }
    assert str(move_target) in by_path and str(moved) not in by_path
    assert str(deleted) not in by_path
    first_id = by_path[str(copied)].id
    assert paths_of(runtime, first_id) == sorted([str(copied), str(copy_target)])

    again = ingest(runtime, [library])
    assert (again.encoded, again.new, again.moved, again.removed) == (0, 0, 0, 0)
    assert again.unchanged == 8


def test_folder_filter_follows_a_move(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    photo = sorted((library / "trips").glob("*.jpg"))[0]
    target = library / "archive" / photo.name
    target.parent.mkdir()
    photo.rename(target)
    ingest(runtime, [library])
    hits = SearchService(runtime).image(
        target, SearchOptions(limit=5, filters=SearchFilter(folder=str(target.parent)))
    )
    assert [hit.path for hit in hits] == [str(target)]


def test_bad_files_are_recorded_and_the_batch_goes_on(
    runtime: Runtime, library: Path, pillow_images: Path
) -> None:
    (library / "truncated.jpg").write_bytes(
        (library / sorted(os.listdir(library))[0]).read_bytes()[:500]
    )
    (library / "notes.jpg").write_text("not an image at all")
    shutil.copy2(pillow_images / "decompression_bomb.gif", library / "bomb.gif")
    report = ingest(runtime, [library])
    assert report.encoded == 8 and report.failed == 3
    with runtime.sessions() as session:
        reasons = {Path(f.path).name: f.reason for f in session.scalars(select(Failure))}
    assert reasons.keys() == {"truncated.jpg", "notes.jpg", "bomb.gif"}
    assert "decompression bomb" in reasons["bomb.gif"]
    assert "not an image" in reasons["notes.jpg"]

    again = ingest(runtime, [library])
    assert again.failed == 0 and again.encoded == 0  # failures are not retried


def test_symlinks_are_not_followed_and_special_files_skipped(
    runtime: Runtime, library: Path, tmp_path: Path, photos: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy2(sorted(photos.glob("*.jpg"))[-1], outside / "secret.jpg")
    (library / "link-to-outside").symlink_to(outside, target_is_directory=True)
    (library / "link.jpg").symlink_to(outside / "secret.jpg")
    os.mkfifo(library / "pipe.jpg")
    report = ingest(runtime, [library])
    assert report.scanned == 8 and report.skipped == 3
    assert all(
        "secret" not in (hit.path or "")
        for hit in SearchService(runtime).text("x", SearchOptions(limit=50))
    )


def test_a_missing_root_is_a_clear_error(runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        ingest(runtime, [tmp_path / "nope"])


def test_date_taken_filters(runtime: Runtime, library: Path) -> None:
    for year, name in ((2015, "old.jpg"), (2023, "new.jpg")):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[36867] = f"{year}:05:01 09:00:00"
        Image.new("RGB", (320, 240), (year % 255, 80, 160)).save(library / name, exif=exif)
    ingest(runtime, [library])
    service = SearchService(runtime)
    after = SearchFilter(taken_after=datetime(2020, 1, 1))
    before = SearchFilter(taken_before=datetime(2020, 1, 1))
    assert [
        Path(h.path or "").name for h in service.text("x", SearchOptions(50, filters=after))
    ] == ["new.jpg"]
    assert [
        Path(h.path or "").name for h in service.text("x", SearchOptions(50, filters=before))
    ] == ["old.jpg"]
    hit = service.text("x", SearchOptions(50, filters=after))[0]
    assert hit.taken_at == "2023-05-01T09:00:00Z" and (hit.width, hit.height) == (320, 240)


def test_an_ingest_refused_because_the_store_is_in_use_registers_nothing(
    settings: Settings, library: Path
) -> None:
    from sqlalchemy import func

    from clipdex.catalog import open_ready_runtime
    from core.catalog.models import IngestRun, Location
    from core.store import open_store
    from core.store.base import StoreLocked

    holder = open_store(settings)  # another process would hold the same lock
    runtime = open_ready_runtime(settings, encoder=FakeEncoder())
    try:
        with pytest.raises(StoreLocked):
            ingest(runtime, [library])
        with runtime.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Location)) == 0
            assert session.scalar(select(func.count()).select_from(IngestRun)) == 0
    finally:
        runtime.close()
        holder.close()
    runtime = open_ready_runtime(settings, encoder=FakeEncoder())
    try:
        assert ingest(runtime, [library]).new == 8
    finally:
        runtime.close()


def test_recording_many_failed_files_takes_statements_per_chunk_not_per_file(
    runtime: Runtime, tmp_path: Path
) -> None:
    """20,000 unreadable files once took 219 s: one query each. Now 40 and 400 cost the same."""
    from sqlalchemy import event, func

    def statements_for(count: int) -> int:
        folder = tmp_path / f"odd-{count}"
        folder.mkdir()
        for number in range(count):  # names that are not UTF-8 are recorded as failures
            name = os.fsencode(folder) + b"/caf\xe9-%d.jpg" % number
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644))
        seen: list[str] = []

        def count_statement(*args: object) -> None:
            seen.append(str(args[2]))

        event.listen(runtime.engine, "before_cursor_execute", count_statement)
        try:
            report = ingest(runtime, [folder])
        finally:
            event.remove(runtime.engine, "before_cursor_execute", count_statement)
        assert report.failed == count
        return sum("failures" in statement for statement in seen)

    small, large = statements_for(40), statements_for(400)
    assert large <= small + 2
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Failure)) == 440


def test_a_moved_bad_file_keeps_its_failure_at_the_new_path(
    runtime: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a real jpeg at all")
    assert ingest(runtime, [folder]).failed == 1
    (folder / "moved").mkdir()
    (folder / "broken.jpg").rename(folder / "moved" / "broken.jpg")
    ingest(runtime, [folder])
    with runtime.sessions() as session:
        paths = list(session.scalars(select(Failure.path)))
    assert paths == [str(folder / "moved" / "broken.jpg")]
