"""The results page in a real headless Chromium: search, filter, sort, the full view with
"more like this", the URL as the page's state (reload, back), drag-and-drop, upload names."""

from __future__ import annotations

import base64
import io
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pydantic import SecretStr

from clipdex.http import create_app
from core.runtime import Runtime
from ingest.run import ingest
from tests.server import serve

pytestmark = pytest.mark.unit

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DAYS = [3, 7, 1, 8, 2, 6, 4, 5]  # the day each library photo was taken (in name order)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is not installed (scripts/install.sh installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def dated(library: Path) -> dict[str, int]:
    """The library's photos re-saved with an EXIF date each: file name -> day of March 2021."""
    days = {}
    for day, path in zip(DAYS, sorted(library.rglob("*.jpg"), key=lambda p: p.name), strict=True):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[36867] = f"2021:03:{day:02d} 10:00:00"
        with Image.open(path) as image:
            image.load()
        image.save(path, "JPEG", quality=90, exif=exif)
        days[path.name] = day
    return days


@pytest.fixture
def site(runtime: Runtime, library: Path, dated: dict[str, int]) -> Iterator[str]:
    ingest(runtime, [library])
    with serve(create_app(runtime.settings, runtime)) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page()
    yield opened
    opened.close()


def search_for(page: Page, text: str) -> None:
    page.fill("#query", text)
    page.click("#search-button")


def ids(page: Page) -> list[str | None]:
    figures = page.locator("#grid figure")
    return [figures.nth(i).get_attribute("data-id") for i in range(figures.count())]


def names(page: Page) -> list[str]:
    return page.locator("#grid .name").all_inner_texts()


def url_params(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def thumbnails_loaded(page: Page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#grid img')].every(i => i.naturalWidth > 0)"
    )


def test_search_then_filter_then_sort_by_date(
    page: Page, site: str, library: Path, dated: dict[str, int], tmp_path: Path
) -> None:
    page.goto(site)
    search_for(page, "a dog on the beach")
    figures = page.locator("#grid figure")
    expect(figures).to_have_count(8)
    expect(page.locator("#status")).to_contain_text("8 results")
    thumbnails_loaded(page)
    scores = [float(s) for s in page.locator("#grid .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)

    page.click("#filter-panel summary")
    page.fill("#f-folder", str(library.resolve() / "trips"))
    page.press("#f-folder", "Enter")
    expect(figures).to_have_count(4)  # only the photos in trips/
    trips = {p.name for p in (library / "trips").glob("*.jpg")}
    assert set(names(page)) == trips
    expect(page.locator("#filter-count")).to_have_text("(1)")

    page.select_option("#sort", "-taken_at")
    page.wait_for_url(lambda url: "sort=-taken_at" in url)
    newest_first = sorted(trips, key=lambda name: -dated[name])
    expect(page.locator("#grid .name")).to_have_text(newest_first)
    page.select_option("#sort", "taken_at")
    expect(page.locator("#grid .name")).to_have_text(newest_first[::-1])
    page.screenshot(path=str(tmp_path / "results.png"))


def test_a_date_range_keeps_both_ends(page: Page, site: str, dated: dict[str, int]) -> None:
    page.goto(site)
    search_for(page, "a dog on the beach")
    expect(page.locator("#grid figure")).to_have_count(8)
    page.click("#filter-panel summary")
    page.fill("#f-taken-after", "2021-03-05")
    page.fill("#f-taken-before", "2021-03-07")
    page.press("#f-taken-before", "Enter")
    expect(page.locator("#grid figure")).to_have_count(3)
    assert sorted(dated[name] for name in names(page)) == [5, 6, 7]
    assert url_params(page)["taken_before"] == ["2021-03-07"]  # the page's own words


def test_full_view_shows_details_and_more_like_this(page: Page, site: str) -> None:
    page.goto(site)
    search_for(page, "a dog on the beach")
    expect(page.locator("#grid figure")).to_have_count(8)
    first = page.locator("#grid figure").nth(0)
    clicked = first.get_attribute("data-id")
    name = first.locator(".name").inner_text()
    first.locator("button.open").focus()
    page.keyboard.press("Enter")  # the keyboard opens it as a click does

    dialog = page.locator("#detail")
    expect(dialog).to_be_visible()
    expect(page.locator("#detail-title")).to_have_text(name)
    page.wait_for_function("() => document.querySelector('#detail-image').naturalWidth > 0")
    assert page.locator("#detail-image").get_attribute("data-source") == "original"
    natural = page.evaluate(
        "() => [document.querySelector('#detail-image').naturalWidth,"
        " document.querySelector('#detail-image').naturalHeight]"
    )
    size = f"{natural[0]} \N{MULTIPLICATION SIGN} {natural[1]}"
    expect(page.locator('dd[data-fact="Size"]')).to_have_text(size)
    expect(page.locator('dd[data-fact="Format"]')).to_have_text("JPEG")
    expect(page.locator('dd[data-fact="Taken"]')).to_contain_text("2021-03-")
    expect(page.locator('dd[data-fact="Paths"]')).to_contain_text(name)
    assert url_params(page)["view"] == [clicked]

    page.click("#more-like-this")
    expect(dialog).to_be_hidden()
    expect(page.locator("#grid figure")).to_have_count(7)  # everything but the clicked image
    assert clicked not in ids(page)
    assert url_params(page)["similar"] == [clicked]

    page.go_back()  # the full view again
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")  # closing it is a step back too
    expect(dialog).to_be_hidden()
    # The dialog closes at once; the step back (history.back) lands just after: wait for it.
    page.wait_for_function("() => !new URLSearchParams(location.search).has('view')")
    assert "view" not in url_params(page)
    expect(page.locator("#query")).to_have_value("a dog on the beach")
    expect(page.locator("#grid figure")).to_have_count(8)


def test_the_url_is_the_state_reload_and_back(page: Page, site: str, library: Path) -> None:
    page.goto(site)
    search_for(page, "a dog on the beach")
    expect(page.locator("#grid figure")).to_have_count(8)
    dog = ids(page)
    page.click("#filter-panel summary")
    page.fill("#f-folder", str(library.resolve() / "trips"))
    page.press("#f-folder", "Enter")
    expect(page.locator("#grid figure")).to_have_count(4)
    in_trips = ids(page)
    page.select_option("#sort", "-taken_at")
    page.wait_for_url(lambda url: "sort=-taken_at" in url)
    # The URL changes as the sorted search starts ("Searching…"); the old four stay on show
    # until its answer replaces them: wait for that answer, not just for four figures.
    expect(page.locator("#status")).to_contain_text("4 results")
    expect(page.locator("#grid figure")).to_have_count(4)
    filtered = ids(page)

    page.reload()
    expect(page.locator("#grid figure")).to_have_count(4)
    assert ids(page) == filtered
    expect(page.locator("#query")).to_have_value("a dog on the beach")
    expect(page.locator("#f-folder")).to_have_value(str(library.resolve() / "trips"))
    expect(page.locator("#sort")).to_have_value("-taken_at")

    shared = browser_page_for(page, page.url)  # a shared link opens the same results
    expect(shared.locator("#grid figure")).to_have_count(4)
    assert ids(shared) == filtered
    shared.close()

    search_for(page, "a red bicycle")
    expect(page.locator("#query")).to_have_value("a red bicycle")
    page.wait_for_url(lambda url: "bicycle" in url)
    page.go_back()
    expect(page.locator("#query")).to_have_value("a dog on the beach")
    expect(page.locator("#grid figure")).to_have_count(4)
    assert ids(page) == filtered
    page.go_back()
    expect(page.locator("#sort")).to_have_value("relevance")
    expect(page.locator("#status")).to_contain_text("4 results")  # the re-run's answer
    assert ids(page) == in_trips
    page.go_back()
    expect(page.locator("#grid figure")).to_have_count(8)
    assert ids(page) == dog
    expect(page.locator("#f-folder")).to_have_value("")


def test_the_page_number_comes_from_the_url(page: Page, site: str) -> None:
    page.goto(f"{site}/?q=a+dog&page=2&collapse=0.95")
    expect(page.locator("#page")).to_have_text("page 2")
    expect(page.locator("#f-collapse")).to_be_checked()
    expect(page.locator("#grid figure")).to_have_count(0)  # 8 photos fill less than one page
    expect(page.locator("#next")).to_be_disabled()
    page.click("#prev")
    expect(page.locator("#grid figure")).to_have_count(8)
    expect(page.locator("#prev")).to_be_disabled()
    assert "page" not in url_params(page)
    page.uncheck("#f-collapse")
    page.wait_for_url(lambda url: "collapse" not in url)
    expect(page.locator("#grid figure")).to_have_count(8)
    page.go_back()
    page.go_back()
    expect(page.locator("#page")).to_have_text("page 2")


def browser_page_for(page: Page, url: str) -> Page:
    assert page.context.browser is not None
    shared = page.context.browser.new_page()
    shared.goto(url)
    return shared


def test_dropping_an_image_searches_with_it(page: Page, site: str, library: Path) -> None:
    photo = sorted(library.rglob("*.jpg"))[0]
    page.goto(site)
    data = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "query.jpg", { type: "image/jpeg" }));
            return transfer;
        }""",
        base64.b64encode(photo.read_bytes()).decode(),
    )
    page.dispatch_event("body", "dragover", {"dataTransfer": data})
    expect(page.locator("#drop-zone")).to_be_visible()
    page.dispatch_event("body", "drop", {"dataTransfer": data})
    expect(page.locator("#drop-zone")).to_be_hidden()
    expect(page.locator("#grid figure")).to_have_count(8)
    assert names(page)[0] == photo.name  # the same picture comes first
    assert float(page.locator("#grid .score").first.inner_text()) > 0.99
    assert "image" in url_params(page)

    text = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["hello"], "notes.txt", { type: "text/plain" }));
            return transfer;
        }"""
    )
    page.dispatch_event("body", "drop", {"dataTransfer": text})
    expect(page.locator("#status")).to_have_text("notes.txt is not an image")
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#grid figure")).to_have_count(8)  # the results stay


def upload(site: str, name: str, size: tuple[int, int], meta: dict[str, str]) -> str:
    """Upload one picture through the API and wait until it is indexed; its asset id."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (250, 120, 10)).save(buffer, "JPEG")
    files = [("files", (name, buffer.getvalue(), "image/jpeg"))]
    accepted = httpx.post(
        f"{site}/v1/images", files=files, data={"metadata": json.dumps(meta)}
    ).json()
    deadline = time.monotonic() + 30
    while not httpx.get(f"{site}/v1/jobs/{accepted['job']}").json()["done"]:
        assert time.monotonic() < deadline, "the upload was not indexed"
        time.sleep(0.1)
    asset_id: str = accepted["assets"][0]
    return asset_id


def test_an_upload_shows_its_original_name(page: Page, site: str) -> None:
    asset_id = upload(site, "Holiday at the lake.jpg", (64, 96), {"album": "summer"})
    page.goto(site)
    search_for(page, "an orange picture")
    expect(page.locator("#grid figure")).to_have_count(9)
    uploaded = page.locator(f'#grid figure[data-id="{asset_id}"]')
    expect(uploaded.locator(".name")).to_have_text("Holiday at the lake.jpg")
    uploaded.locator("button.open").click()
    expect(page.locator("#detail-title")).to_have_text("Holiday at the lake.jpg")
    expect(page.locator('dd[data-fact="Metadata"]')).to_have_text("album: summer")
    expect(page.locator('dd[data-fact="Orientation"]')).to_have_text("portrait")


def test_orientation_metadata_and_words_only(page: Page, site: str, library: Path) -> None:
    asset_id = upload(site, "Holiday at the lake.jpg", (64, 96), {"album": "summer"})
    portrait = {"Holiday at the lake.jpg"}
    for path in library.rglob("*.jpg"):
        with Image.open(path) as image:
            if image.height > image.width:
                portrait.add(path.name)
    page.goto(site)
    search_for(page, "an orange picture")
    expect(page.locator("#grid figure")).to_have_count(9)
    page.click("#filter-panel summary")
    page.select_option("#f-orientation", "portrait")
    expect(page.locator("#grid figure")).to_have_count(len(portrait))
    assert set(names(page)) == portrait
    page.select_option("#f-orientation", "landscape")
    expect(page.locator("#grid figure")).to_have_count(9 - len(portrait))
    assert not portrait & set(names(page))
    page.click("#clear-filters")
    expect(page.locator("#grid figure")).to_have_count(9)
    page.fill("#f-metadata", "album=summer")
    page.press("#f-metadata", "Enter")
    expect(page.locator("#grid figure")).to_have_count(1)
    page.click("#clear-filters")
    page.select_option("#mode", "keyword")
    search_for(page, "lake")
    expect(page.locator("#grid figure").first).to_have_attribute("data-id", asset_id)
    assert url_params(page)["mode"] == ["keyword"]
    page.locator("#grid button.open").first.click()
    page.click("#more-like-this")  # by meaning: an asset has no words
    expect(page.locator("#grid figure")).to_have_count(8)
    assert asset_id not in ids(page)
    expect(page.locator("#status")).not_to_have_class("error")


def test_the_page_sends_the_key_from_local_storage(
    browser: Browser, runtime: Runtime, library: Path
) -> None:
    ingest(runtime, [library])
    settings = runtime.settings.model_copy(update={"api_read_keys": [SecretStr("reader")]})
    with serve(create_app(settings, runtime)) as url:
        page = browser.new_page()
        page.goto(url)
        search_for(page, "a dog")
        expect(page.locator("#status")).to_have_class("error")
        page.fill("#api-key", "reader")
        page.press("#api-key", "Tab")  # the change stores the key and runs the search again
        expect(page.locator("#grid figure")).to_have_count(8)
        thumbnails_loaded(page)
        page.reload()  # the key stays in localStorage
        expect(page.locator("#api-key")).to_have_value("reader")
        expect(page.locator("#grid figure")).to_have_count(8)
        page.close()


def test_a_bad_query_shows_the_message(page: Page, site: str) -> None:
    page.goto(site)
    page.fill("#query", "-people")
    page.click("#search-button")
    expect(page.locator("#status")).to_contain_text("positive term")
    expect(page.locator("#status")).to_have_class("error")
