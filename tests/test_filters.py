"""The filters people ask for, date sort within the relevant set, and paging totals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.runtime import Runtime
from core.store.base import SearchFilter
from ingest.run import ingest
from search import ranking
from search.engine import Hit, SearchService
from search.query import BadQuery, SearchOptions, Sort
from tests.searchkit import enrich, set_meta

pytestmark = pytest.mark.unit

ALL = 50


@pytest.fixture
def service(runtime: Runtime, library: Path) -> SearchService:
    enrich(library)
    ingest(runtime, [library])
    return SearchService(runtime)


def _hits(service: SearchService, filters: SearchFilter | None = None) -> list[Hit]:
    return service.text("a photo", SearchOptions(limit=ALL, filters=filters or SearchFilter()))


def test_each_filter_keeps_exactly_the_matching_hits(service: SearchService) -> None:
    everything = _hits(service)
    assert len(everything) == 16
    cases: dict[str, tuple[SearchFilter, Callable[[Any], bool]]] = {
        "max_width": (SearchFilter(max_width=300), lambda h: h.width <= 300),
        "max_height": (SearchFilter(max_height=200), lambda h: h.height <= 200),
        "portrait": (SearchFilter(orientation="portrait"), lambda h: h.height > h.width),
        "landscape": (SearchFilter(orientation="landscape"), lambda h: h.width > h.height),
        "bytes": (
            SearchFilter(min_bytes=50_000, max_bytes=200_000),
            lambda h: 50_000 <= h.bytes <= 200_000,
        ),
        "make": (SearchFilter(camera_make="Canon"), lambda h: h.camera_make == "Canon"),
        "model": (SearchFilter(camera_model="D750"), lambda h: h.camera_model == "D750"),
    }
    for name, (filters, keep) in cases.items():
        expected = [h.id for h in everything if keep(h)]
        assert expected and len(expected) < 16, f"{name} must tell something apart"
        # same pixels score the same: ties may come in either order, so compare sets
        assert {h.id for h in _hits(service, filters)} == set(expected), name


def test_displayed_size_and_orientation_of_turned_photos(service: SearchService) -> None:
    portraits = _hits(service, SearchFilter(orientation="portrait"))
    assert portraits and all(h.orientation == "portrait" for h in portraits)
    for hit in portraits:
        with Image.open(hit.path or "") as image:  # the copies were saved turned
            assert (hit.width, hit.height) == image.size


def test_metadata_filter_matches_key_value_pairs(
    runtime: Runtime, service: SearchService, library: Path
) -> None:
    photos = sorted(library.rglob("*.png"))
    first = set_meta(runtime, photos[0], {"album": "summer", "tags": ["dog", "beach"]})
    second = set_meta(runtime, photos[1], {"album": "summer", "tags": ["cat"]})
    assert {h.id for h in _hits(service, SearchFilter(metadata=(("album", "summer"),)))} == {
        first,
        second,
    }
    assert [
        h.id for h in _hits(service, SearchFilter(metadata=(("album", "summer"), ("tags", "dog"))))
    ] == [first]
    assert _hits(service, SearchFilter(metadata=(("album", "winter"),))) == []
    with pytest.raises(BadQuery, match="metadata key"):
        _hits(service, SearchFilter(metadata=(("a.b", "x"),)))


def test_sort_by_date_orders_the_relevant_set_with_undated_last(service: SearchService) -> None:
    relevant = SearchOptions(limit=ALL, adaptive_cutoff=True)
    kept = service.image(_first_png(service), relevant)
    assert 1 < len(kept) < 16, "the cutoff must decide something here"
    sorts: list[tuple[Sort, bool]] = [("taken_at", False), ("-taken_at", True)]
    for sort, newest_first in sorts:
        ordered = service.image(
            _first_png(service), SearchOptions(limit=ALL, adaptive_cutoff=True, sort=sort)
        )
        assert {h.id for h in ordered} == {h.id for h in kept}  # same set: sort after cutoff
        dates = [h.taken_at for h in ordered if h.taken_at]
        assert dates == sorted(dates, reverse=newest_first)
        undated = [h.id for h in ordered if not h.taken_at]
        assert [h.id for h in ordered][len(dates) :] == undated  # undated last
    whole = service.text("a photo", SearchOptions(limit=ALL, sort="-taken_at"))
    assert len(whole) == 16 and whole[0].taken_at == max(h.taken_at for h in whole if h.taken_at)


def test_a_wide_filter_gets_no_total_rather_than_a_costly_count(
    service: SearchService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exact count visits every match (45 ms for 335,000 of 1M points): a page counts only
    a filter estimated within ``EXACT_TOTAL_LIMIT`` matches, and says nothing past it."""
    monkeypatch.setattr(ranking, "EXACT_TOTAL_LIMIT", 5)
    pngs = service.text_page(
        "a photo", SearchOptions(limit=3, filters=SearchFilter(formats=("PNG",)))
    )
    assert (len(pngs.hits), pngs.has_more, pngs.total) == (3, True, None)  # 8 match
    last = service.text_page(
        "a photo", SearchOptions(limit=3, offset=6, filters=SearchFilter(formats=("PNG",)))
    )
    assert (len(last.hits), last.has_more, last.total) == (2, False, 8)  # the end is in sight
    few = service.text_page(
        "a photo", SearchOptions(limit=3, filters=SearchFilter(formats=("PNG",), max_width=300))
    )
    matching = len(_hits(service, SearchFilter(formats=("PNG",), max_width=300)))
    assert 1 <= matching <= 5 and few.total == matching
    assert service.text_page("a photo", SearchOptions(limit=3)).total == 16  # kept by the store


def test_pages_say_whether_more_follow_and_the_total(service: SearchService) -> None:
    first = service.text_page("a photo", SearchOptions(limit=5))
    assert (first.has_more, first.total) == (True, 16)
    last = service.text_page("a photo", SearchOptions(limit=5, offset=15))
    assert (len(last.hits), last.has_more, last.total) == (1, False, 16)
    pngs = service.text_page(
        "a photo", SearchOptions(limit=8, filters=SearchFilter(formats=("PNG",)))
    )
    assert (pngs.has_more, pngs.total) == (False, 8)
    floor = first.hits[2].score  # three hits reach this score
    beyond = service.text_page("a photo", SearchOptions(limit=5, offset=10, min_score=floor))
    assert (beyond.hits, beyond.has_more, beyond.total) == ([], False, None)  # not "10 in all"
    cut = service.text_page("a photo", SearchOptions(limit=2, adaptive_cutoff=True))
    assert cut.total is None or cut.total >= len(cut.hits)
    similar = service.similar_page(first.hits[0].id, SearchOptions(limit=20))
    assert (len(similar.hits), similar.has_more, similar.total) == (15, False, 15)
    with pytest.raises(BadQuery, match="min_width"):
        service.text("x", SearchOptions(filters=SearchFilter(min_width=500, max_width=100)))
    with pytest.raises(BadQuery, match="orientation must be one of"):
        service.text("x", SearchOptions(filters=SearchFilter(orientation="diagonal")))


def _first_png(service: SearchService) -> Path:
    hits = service.text("a photo", SearchOptions(limit=ALL, filters=SearchFilter(formats=("PNG",))))
    return Path(sorted(h.path or "" for h in hits)[0])


@pytest.mark.parametrize("sort", ["relevance", "-taken_at"])
def test_a_hit_shows_the_path_its_folder_filter_or_keywords_matched(
    runtime: Runtime, library: Path, sort: Sort
) -> None:
    """The same bytes at two paths are one asset: a search narrowed to the second path's
    folder, or a keyword naming its file, shows that path (and its name), not the first."""
    source = sorted(library.rglob("*.jpg"))[0]
    for folder, name in (("a", "copy.jpg"), ("b", "wanted.jpg")):
        (library / folder).mkdir()
        (library / folder / name).write_bytes(source.read_bytes())
    ingest(runtime, [library])
    service = SearchService(runtime)
    wanted = str((library / "b" / "wanted.jpg").resolve())

    narrowed = SearchOptions(limit=5, sort=sort, filters=SearchFilter(folder=str(library / "b")))
    (hit,) = service.text("a photo", narrowed)
    assert (hit.path, hit.name) == (wanted, "wanted.jpg")
    (named,) = service.text("wanted", SearchOptions(limit=5, mode="keyword", sort=sort))
    assert (named.path, named.name, named.id) == (wanted, "wanted.jpg", hit.id)
    everywhere = [h for h in service.text("a photo", SearchOptions(limit=50)) if h.id == hit.id]
    assert [h.path for h in everywhere] == [str(source.resolve())]  # no filter: the first path
