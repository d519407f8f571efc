"""The results page in a real headless Chromium: type a query, see thumbnails, click one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from clipdex.http import create_app
from core.runtime import Runtime
from ingest.run import ingest
from tests.server import serve

pytestmark = pytest.mark.unit

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


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
def site(runtime: Runtime, library: Path) -> Iterator[str]:
    ingest(runtime, [library])
    with serve(create_app(runtime.settings, runtime)) as url:
        yield url


def test_search_shows_thumbnails_and_more_like_this(
    browser: Browser, site: str, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.goto(site)
    page.fill("#query", "a dog on the beach")
    page.click("#search-button")
    figures = page.locator("#grid figure")
    expect(figures).to_have_count(8)
    expect(page.locator("#status")).to_contain_text("8 results")
    first = figures.nth(0)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#grid img')].every(i => i.naturalWidth > 0)"
    )
    scores = [float(s) for s in page.locator("#grid .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    page.screenshot(path=str(tmp_path / "results.png"))

    clicked = first.get_attribute("data-id")
    first.locator("img").click()
    expect(figures).to_have_count(7)  # more like this: everything but the clicked image
    ids = [figures.nth(i).get_attribute("data-id") for i in range(7)]
    assert clicked not in ids
    page.close()


def test_a_bad_query_shows_the_message(browser: Browser, site: str) -> None:
    page = browser.new_page()
    page.goto(site)
    page.fill("#query", "-people")
    page.click("#search-button")
    expect(page.locator("#status")).to_contain_text("positive term")
    expect(page.locator("#status")).to_have_class("error")
    page.close()
