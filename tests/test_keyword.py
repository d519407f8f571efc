"""Keyword and hybrid search through the engine, on the embedded store (Qdrant Edge) and on
qdrant-client (the code path of a Qdrant server): file names, folders, tags, EXIF text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clipdex.catalog import open_ready_runtime
from core.runtime import Runtime
from core.settings import Settings
from core.store.base import SearchFilter
from core.store.factory import MEMORY, open_store
from ingest.run import ingest
from search.engine import SearchService
from search.query import BadQuery, SearchOptions
from tests.fakes import FakeEncoder
from tests.searchkit import NAMED, asset_id_of, enrich, set_meta

pytestmark = pytest.mark.unit

KEYWORD = SearchOptions(limit=5, mode="keyword")


@pytest.fixture(params=["embedded", "qdrant-client"])
def indexed(
    request: pytest.FixtureRequest, settings: Settings, library: Path
) -> Iterator[tuple[Runtime, Path]]:
    store = open_store(settings, MEMORY) if request.param == "qdrant-client" else None
    runtime = open_ready_runtime(settings, encoder=FakeEncoder(), store=store)
    enrich(library)
    ingest(runtime, [library])
    yield runtime, library
    runtime.close()


def test_a_file_name_is_found_first(indexed: tuple[Runtime, Path]) -> None:
    runtime, library = indexed
    named = asset_id_of(runtime, next(library.rglob(NAMED)))
    hits = SearchService(runtime).text("zanzibar", KEYWORD)
    assert [h.id for h in hits] == [named]  # only it has the word
    assert hits[0].name == NAMED


def test_a_tag_is_found_first_and_follows_the_tag(indexed: tuple[Runtime, Path]) -> None:
    runtime, library = indexed
    photo = sorted(library.rglob("*.png"))[5]
    tagged = set_meta(runtime, photo, {"scene": "kayaking", "tags": ["lagoon"]})
    service = SearchService(runtime)
    assert [h.id for h in service.text("kayaking", KEYWORD)] == [tagged]
    assert service.text("lagoon trip", KEYWORD)[0].id == tagged
    assert service.text("kayaking", KEYWORD)[0].meta == {"scene": "kayaking", "tags": ["lagoon"]}
    set_meta(runtime, photo, {"scene": "hiking"})
    assert service.text("kayaking", KEYWORD) == []


def test_exif_camera_and_folder_words(indexed: tuple[Runtime, Path]) -> None:
    runtime, library = indexed
    service = SearchService(runtime)
    hasselblads = service.text("hasselblad", SearchOptions(limit=50, mode="keyword"))
    assert hasselblads and all(h.camera_make == "Hasselblad" for h in hasselblads)
    same = SearchOptions(limit=50, filters=SearchFilter(camera_make="Hasselblad"))
    assert {h.id for h in hasselblads} == {h.id for h in service.text("x", same)}
    trips = service.text("trips", SearchOptions(limit=50, mode="keyword"))
    assert trips and all("/trips/" in (h.path or "") for h in trips)
    assert len(trips) == len(list((library / "trips").iterdir()))


def test_hybrid_ranks_an_exact_file_name_above_its_vector_neighbours(
    indexed: tuple[Runtime, Path],
) -> None:
    runtime, library = indexed
    named = asset_id_of(runtime, next(library.rglob(NAMED)))
    service = SearchService(runtime)
    vector = [h.id for h in service.text("zanzibar harbour", SearchOptions(limit=50))]
    assert vector[0] != named, "the vector side alone must not already put it first"
    hybrid = service.text("zanzibar harbour", SearchOptions(limit=50, mode="hybrid"))
    assert hybrid[0].id == named
    assert set(vector) <= {h.id for h in hybrid}  # the vector neighbours are still there
    vector_only = service.text(
        "zanzibar harbour", SearchOptions(limit=50, mode="hybrid", keyword_weight=0.0)
    )
    assert [h.id for h in vector_only] == vector  # weight 0: the vector ranking itself


def test_keyword_mode_needs_words(indexed: tuple[Runtime, Path]) -> None:
    runtime, library = indexed
    service = SearchService(runtime)
    photo = sorted(library.rglob("*.jpg"))[0]
    with pytest.raises(BadQuery, match="no words for keyword mode"):
        service.image(photo, KEYWORD)
    with pytest.raises(BadQuery, match="min_score is a cosine"):
        service.text("zanzibar", SearchOptions(mode="keyword", min_score=0.2))
    assert service.text("nothing-matches-this", KEYWORD) == []


def test_hybrid_pages_never_repeat_or_skip_a_hit(indexed: tuple[Runtime, Path]) -> None:
    """The fused order is the same whatever page is asked: pages of 3 concatenate to the
    whole ranking, each hit once (a window that grew with the page reordered earlier pages)."""
    runtime, _ = indexed
    service = SearchService(runtime)
    whole = [h.id for h in service.text("photo png jpg", SearchOptions(limit=50, mode="hybrid"))]
    paged: list[str] = []
    for offset in range(0, len(whole), 3):
        page = SearchOptions(limit=3, offset=offset, mode="hybrid")
        paged += [h.id for h in service.text("photo png jpg", page)]
    assert paged == whole and len(set(paged)) == len(paged) > 6


def test_a_long_description_never_hides_the_name_folders_or_tags() -> None:
    from core.store.keywords import MAX_WORDS, payload_words

    description = " ".join(f"aaword{i}" for i in range(MAX_WORDS + 100))
    payload = {"name": "zoo.jpg", "paths": ["/photos/vacation/zoo.jpg"],
               "meta": {"tags": ["zebra"]}, "description": description}  # fmt: skip
    found = payload_words(payload)
    assert len(found) == MAX_WORDS
    assert {"zoo", "jpg", "photos", "vacation", "zebra"} <= found
