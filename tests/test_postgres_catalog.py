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
