"""The CLI through a running ``clipdex serve`` says exactly what it says without one (the same
one line, exit code 2, no traceback), and the HTTP API treats a folder, an unknown parameter
and the default limit the way the CLI does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

import clipdex.cli.searching as searching
from clipdex.catalog import open_ready_runtime
from clipdex.cli import command
from clipdex.homeserver import HomeServer
from clipdex.http import create_app
from clipdex.remote import RemoteHome
from core.runtime import Runtime
from core.settings import Settings, load_settings
from ingest.run import ingest
from search.client import ClipdexClient, ClipdexError
from search.engine import SearchService
from search.query import SearchOptions
from tests.conftest import cli_env
from tests.fakes import FakeEncoder
from tests.server import serve

pytestmark = pytest.mark.unit

BAD_SEARCHES = {  # CLI arguments -> the one line they must print, server or not
    "nan min score": (["search", "dog", "--min-score", "nan"], "min_score must be between"),
    "inf min score": (["search", "dog", "--min-score", "inf"], "min_score must be between"),
    "-inf min score": (["search", "dog", "--min-score", "-inf"], "min_score must be between"),
    "nan collapse": (["search", "dog", "--collapse", "nan"], "collapse_duplicates must be"),
    "nan keyword weight": (
        ["search", "dog", "--mode", "hybrid", "--keyword-weight", "nan"],
        "keyword_weight must be between 0 and 1, got nan",
    ),
    "zero limit": (["search", "dog", "--limit", "0"], "limit must be between 1 and 1000, got 0"),
    "deep offset": (["search", "dog", "--offset", "100001"], "offset must be between"),
    "bad mode": (["search", "dog", "--mode", "fuzzy"], "mode must be one of"),
    "bad orientation": (["search", "dog", "--orientation", "up"], "orientation must be one of"),
    "widths": (
        ["search", "dog", "--min-width", "9", "--max-width", "1"],
        "min_width is above max_width, got 9 > 1",
    ),
    "bad where": (["search", "dog", "--where", "a.b=c"], "a metadata key must be"),
    "nan similar": (["similar", "{asset}", "--min-score", "nan"], "min_score must be between"),
    "zero limit similar": (["similar", "{asset}", "--limit", "0"], "limit must be between"),
    "asset path": (["asset", "{photo}"], "(asset ids are UUIDs)"),
    "asset word": (["asset", "nope"], "no asset with id 'nope' (asset ids are UUIDs)"),
    "similar path": (["similar", "{photo}"], "(asset ids are UUIDs)"),
    "similar path keyword": (
        ["similar", "{photo}", "--mode", "keyword"],
        "more like this has no words for keyword mode",
    ),
    "empty image": (
        ["search", "--image", "{empty}"],
        "unsupported image: not an image in an allowed format",
    ),
    "nan weight": (
        ["search", "--image", "{photo}", "--weight", "nan"],
        "term weight must be non-zero and within ±100, got nan",
    ),
}


@dataclass(frozen=True)
class Home:
    settings: Settings
    library: Path
    photo: Path
    empty: Path
    asset: str


@pytest.fixture
def home(settings: Settings, library: Path, tmp_path: Path) -> Home:
    runtime = open_ready_runtime(settings)  # the real tiny model, as the CLI loads it
    try:
        ingest(runtime, [library])
    finally:
        runtime.close()
    photo = sorted(library.rglob("*.jpg"))[0]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    result = _cli(settings, ["search", "x", "--limit", "1", "--json"])
    return Home(settings, library, photo, empty, result.stdout.split('"id": "')[1].split('"')[0])


def _cli(settings: Settings, args: list[str], **env: str) -> Result:
    return CliRunner().invoke(command(), args, env=cli_env(settings.home, **env))


def _args(args: list[str], home: Home) -> list[str]:
    names = {"{asset}": home.asset, "{photo}": str(home.photo), "{empty}": str(home.empty)}
    return [names.get(arg, arg) for arg in args]


@pytest.fixture
def through_server(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A server that owns the home, as ``clipdex serve`` does, and the search commands sent
    through it (the CLI finds it as it finds ``serve.json``'s server)."""
    with _served(home.settings, monkeypatch):
        yield


@contextmanager
def _served(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A server with ``settings`` over their home, where the CLI's search commands go."""
    runtime = open_ready_runtime(settings)
    try:
        with serve(create_app(settings, runtime)) as url:
            remote = RemoteHome(HomeServer(url, 0, ""))
            monkeypatch.setattr(searching, "served_home", lambda: remote)
            yield
    finally:
        runtime.close()


def _outcome(result: Result) -> tuple[int, str]:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def test_bad_searches_fail_the_same_with_and_without_a_server(
    home: Home, request: pytest.FixtureRequest
) -> None:
    alone = {
        label: _outcome(_cli(home.settings, _args(args, home)))
        for label, (args, _) in BAD_SEARCHES.items()
    }
    request.getfixturevalue("through_server")
    served = {
        label: _outcome(_cli(home.settings, _args(args, home)))
        for label, (args, _) in BAD_SEARCHES.items()
    }
    for label, (_, message) in BAD_SEARCHES.items():
        code, stderr = alone[label]
        assert code == 2 and stderr.startswith("clipdex: error: "), (label, stderr)
        assert message in stderr and stderr.count("\n") == 1, (label, stderr)
    assert served == alone


def test_the_default_limit_is_capped_at_the_configured_maximum(home: Home) -> None:
    """Without a server; through one, its own maximum applies (the test below)."""

    def hits(*args: str) -> int:
        result = _cli(home.settings, [*args, "--json"], CLIPDEX_SEARCH_MAX_LIMIT="3")
        assert result.exit_code == 0, result.output
        return result.stdout.count('"id"')

    def refused(*args: str) -> str:
        result = _cli(home.settings, list(args), CLIPDEX_SEARCH_MAX_LIMIT="3")
        assert result.exit_code == 2
        return result.stderr

    assert hits("search", "dog") == 3
    assert hits("similar", home.asset) == 3
    assert "limit must be between 1 and 3, got 4" in refused("search", "dog", "--limit", "4")


@pytest.fixture
def http(runtime: Runtime, library: Path) -> Iterator[TestClient]:
    ingest(runtime, [library])
    with TestClient(create_app(runtime.settings, runtime)) as client:
        yield client


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def test_a_folder_matches_however_it_is_written(http: TestClient, library: Path) -> None:
    trips = str(library.resolve() / "trips")
    asset = _ids(http.get("/v1/search", params={"q": "x", "limit": 1}))[0]
    for spelling in (trips + "/", f"{trips}/../trips", trips + "//"):
        plain = _ids(http.get("/v1/search", params={"q": "x", "folder": trips}))
        assert plain, "a folder of four photos finds them"
        assert _ids(http.get("/v1/search", params={"q": "x", "folder": spelling})) == plain
        body = {"query": "x", "filters": {"folder": spelling}}
        assert _ids(http.post("/v1/search", json=body)) == plain
        similar = f"/v1/assets/{asset}/similar"
        assert _ids(http.get(similar, params={"folder": spelling})) == _ids(
            http.get(similar, params={"folder": trips})
        )
    empty = http.get("/v1/search", params={"q": "x", "folder": " "})
    assert empty.status_code == 422 and empty.json()["detail"] == "folder is empty"
    for relative in ("trips", "~/trips", "C:\\photos"):  # the server's working folder is no one's
        refused = http.get("/v1/search", params={"q": "x", "folder": relative})
        assert refused.status_code == 422 and "absolute" in refused.json()["detail"], relative


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"formats": "BMP"}, ["query.formats"]),
        ({"fromat": "BMP", "colapse": "0.9"}, ["query.fromat", "query.colapse"]),
        ({"adaptive_cutoff": "maybe"}, ["query.adaptive_cutoff"]),
    ],
)
def test_unknown_parameters_are_refused_by_name(
    http: TestClient, params: dict[str, str], named: list[str]
) -> None:
    asset = _ids(http.get("/v1/search", params={"q": "x", "limit": 1}))[0]
    for url, query in (("/v1/search", {"q": "x"}), (f"/v1/assets/{asset}/similar", {})):
        response = http.get(url, params={**query, **params})
        assert response.status_code == 422, response.text
        for name in named:
            assert f"{name}: Extra inputs are not permitted" in response.json()["detail"]


def test_the_image_form_refuses_unknown_fields(http: TestClient, library: Path) -> None:
    photo = {"file": ("q.jpg", sorted(library.rglob("*.jpg"))[0].read_bytes())}
    assert len(_ids(http.post("/v1/search/image", files=photo, data={"limit": "2"}))) == 2
    form = http.post("/v1/search/image", files=photo, data={"bogus": "1"})
    assert form.status_code == 422
    assert form.json()["detail"] == "body.bogus: Extra inputs are not permitted"
    query = http.post("/v1/search/image?limit=2", files=photo)
    assert query.status_code == 422 and "query.limit" in query.json()["detail"]


def test_http_default_limit_is_capped_and_a_422_does_not_echo_the_input(
    settings: Settings, library: Path
) -> None:
    capped = load_settings(home=settings.home, model="clipdex-tiny", search_max_limit=3)
    runtime = open_ready_runtime(capped, encoder=FakeEncoder())
    try:
        ingest(runtime, [library])
        with TestClient(create_app(capped, runtime)) as http:
            assert len(_ids(http.get("/v1/search", params={"q": "x"}))) == 3
            post = http.post("/v1/search", json={"query": "x"})
            assert len(_ids(post)) == 3 and post.json()["limit"] == 3
            similar = http.get(f"/v1/assets/{_ids(post)[0]}/similar")
            assert len(_ids(similar)) == 3
            for huge in ("100000", "9" * 1000):
                refused = http.get("/v1/search", params={"q": "x", "limit": huge})
                assert refused.status_code == 422
                assert refused.json()["detail"] == "limit must be between 1 and 3"
            widths = http.get("/v1/search", params={"q": "x", "min_width": 777, "max_width": 1})
            assert widths.status_code == 422 and "777" not in widths.text
            meta = {"query": "x", "filters": {"metadata": {"k.z": "v"}}}
            key = http.post("/v1/search", json=meta)
            assert key.status_code == 422 and "k.z" not in key.text
        # In process and through the Python client, options naming no limit are that page too.
        service = SearchService(runtime)
        assert len(service.text("x")) == 3
        assert len(service.text("x", SearchOptions(mode="hybrid"))) == 3
        assert len(service.similar(service.text("x")[0].id)) == 3
        with serve(create_app(capped, runtime)) as url, ClipdexClient(url) as client:
            assert len(client.text("x")) == 3
            assert len(client.text("x", SearchOptions(min_score=-1.0))) == 3
            assert len(client.image(sorted(library.rglob("*.jpg"))[0])) == 3
            with pytest.raises(ClipdexError) as raised:
                client.text("x", SearchOptions(limit=4))
            assert raised.value.status == 422
    finally:
        runtime.close()


def test_an_empty_image_term_is_a_non_image(http: TestClient) -> None:
    response = http.post("/v1/search", json={"terms": [{"image": ""}]})
    assert response.status_code == 415
    assert response.json()["detail"] == "unsupported image: not an image in an allowed format"


def test_the_client_sends_any_asset_id_as_it_is(runtime: Runtime) -> None:
    """An id with ``?`` or ``%`` reaches the server whole; one no URL path can carry (a ``/``,
    a dot segment) is the same 404 said by the client."""
    with serve(create_app(runtime.settings, runtime)) as url, ClipdexClient(url) as client:
        for bad in ("/etc/passwd", "..", "", "a?b=c", "50%"):
            with pytest.raises(ClipdexError) as raised:
                client.asset(bad)
            assert raised.value.status == 404
            assert raised.value.detail == f"no asset with id {bad!r} (asset ids are UUIDs)"


def test_the_cli_resolves_a_folder_it_was_given_with_or_without_a_server(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A symlink or a relative folder on the command line finds what the real folder finds:
    the CLI resolves it, as ingest resolved the library; the server only takes it as text."""
    (tmp_path / "link").symlink_to(home.library / "trips")
    monkeypatch.chdir(home.library)

    def found(folder: str) -> str:
        result = _cli(home.settings, ["search", "x", "--folder", folder, "--json"])
        assert result.exit_code == 0, result.output
        return "".join(sorted(result.stdout.split('"id": "')[1:]))

    real = found(str(home.library.resolve() / "trips"))
    assert real.count('"') >= 4  # four photos
    assert found(str(tmp_path / "link")) == real and found("trips") == real
    request.getfixturevalue("through_server")
    assert found(str(tmp_path / "link")) == real and found("trips/") == real


def test_the_cli_takes_the_default_page_of_the_server_it_talks_to(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``clipdex serve`` with a smaller CLIPDEX_SEARCH_MAX_LIMIT than the shell's: a search
    naming no limit gets the server's default page, not a 422 for the CLI's default of 10."""
    capped = home.settings.model_copy(update={"search_max_limit": 3})
    with _served(capped, monkeypatch):
        for args in (["search", "dog"], ["similar", home.asset]):
            result = _cli(home.settings, [*args, "--json"])
            assert result.exit_code == 0, result.output
            assert result.stdout.count('"id"') == 3
        refused = _cli(home.settings, ["search", "dog", "--limit", "4"])
        assert refused.exit_code == 2 and "limit must be between 1 and 3" in refused.stderr
