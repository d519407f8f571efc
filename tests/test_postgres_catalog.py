"""The same ingest and search with the catalog on the machine's real PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clipdex.catalog import open_ready_runtime
from core.settings import load_settings
from ingest.run import ingest
from search.engine import SearchService
from search.query import SearchOptions
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.services


def test_ingest_move_and_search_on_postgres(
    fresh_postgres: str, library: Path, tmp_path: Path
) -> None:
    settings = load_settings(home=tmp_path / "home", database_url=fresh_postgres, batch_size=4)
    runtime = open_ready_runtime(settings, encoder=FakeEncoder())
    try:
        first = ingest(runtime, [library])
        assert (first.new, first.encoded) == (8, 8)
        photo = sorted(library.rglob("*.jpg"))[0]
        moved = library / "elsewhere" / photo.name
        moved.parent.mkdir()
        shutil.move(photo, moved)
        second = ingest(runtime, [library])
        assert (second.moved, second.encoded, second.unchanged) == (1, 0, 7)
        hits = SearchService(runtime).image(moved, SearchOptions(limit=1))
        assert hits[0].path == str(moved)
    finally:
        runtime.close()


def test_two_ingests_of_the_same_files_at_once_take_turns(
    fresh_postgres: str, photos: Path, tmp_path: Path
) -> None:
    """Two nightly jobs (or an operator and a cron job) ingest overlapping folders at the same
    moment on one catalog: both finish, every file is registered once and sent once."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from qdrant_client import QdrantClient
    from sqlalchemy import func, select

    from core.catalog.models import Asset, Location
    from core.store.qdrant import QdrantStore

    library = tmp_path / "library"
    for copy in ("a", "b", "c"):  # 153 files: each photo three times, in three folders
        shutil.copytree(photos, library / copy, ignore=shutil.ignore_patterns("*.txt", "*.tsv"))
    settings = load_settings(home=tmp_path / "home", database_url=fresh_postgres, batch_size=4)
    runtimes = [
        open_ready_runtime(
            settings, encoder=FakeEncoder(), store=QdrantStore(QdrantClient(":memory:"), "memory")
        )
        for _ in range(2)
    ]
    runtimes[0].live_version()  # the first version exists before either run starts
    sent: list[str] = []
    start = Barrier(2)

    def run(index: int) -> int:
        roots = [library] if index == 0 else [library / "b", library / "a"]
        start.wait()
        report = ingest(runtimes[index], roots, dispatch=lambda _v, ids: sent.extend(ids))
        return report.scanned

    try:
        with ThreadPoolExecutor(2) as pool:
            scanned = list(pool.map(run, range(2)))
        assert scanned == [153, 102]
        with runtimes[0].sessions() as session:
            assets = session.scalar(select(func.count()).select_from(Asset))
            locations = session.scalar(select(func.count()).select_from(Location))
        jpegs = len(list(photos.glob("*.jpg")))
        assert (assets, locations) == (jpegs, 3 * jpegs)
        assert len(sent) == len(set(sent)) == jpegs
    finally:
        for runtime in runtimes:
            runtime.close()
