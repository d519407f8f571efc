"""A Qdrant server that cannot be reached, or a URL that is not one: every command says so in
one line naming the URL and the cause (exit 2), and the HTTP API answers 503 with that line,
never a traceback or a 500."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.settings import load_settings
from ingest.run import ingest
from tests.conftest import PHOTOS, closed_port, one_line_error, run_cli
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.tiny_real


@pytest.fixture(scope="module")
def ingested_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with an index (embedded store): the commands below then need its collection."""
    root = tmp_path_factory.mktemp("ingested")
    library = root / "library"
    library.mkdir()
    for source in sorted(PHOTOS.glob("*.jpg"))[:3]:
        shutil.copy2(source, library / source.name)
    done = run_cli(root / "home", "ingest", str(library), timeout=120)
    assert done.returncode == 0, done.stderr
    return root / "home"


@pytest.mark.corpus
@pytest.mark.parametrize("command", [["status"], ["search", "x"], ["verify"]])
def test_unreachable_qdrant_is_one_line_naming_the_url(
    ingested_home: Path, command: list[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    line = one_line_error(run_cli(ingested_home, *command, CLIPDEX_QDRANT_URL=url, timeout=120))
    assert f"cannot reach the Qdrant server at {url} (CLIPDEX_QDRANT_URL)" in line
    assert "Connection refused" in line


@pytest.mark.corpus
def test_ingest_into_an_unreachable_qdrant_is_one_line(tmp_path: Path, library: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    line = one_line_error(
        run_cli(tmp_path / "home", "ingest", str(library), CLIPDEX_QDRANT_URL=url, timeout=120)
    )
    assert f"cannot reach the Qdrant server at {url} (CLIPDEX_QDRANT_URL)" in line


@pytest.mark.corpus
def test_a_qdrant_host_that_does_not_resolve_is_one_line(ingested_home: Path) -> None:
    line = one_line_error(
        run_cli(ingested_home, "status", CLIPDEX_QDRANT_URL="no-such-host.invalid", timeout=120)
    )
    assert "cannot reach the Qdrant server at http://no-such-host.invalid:6333" in line


@pytest.mark.parametrize("url", ["ftp://x", "grpc://127.0.0.1:6334"])
def test_a_qdrant_url_of_another_scheme_is_refused_by_the_settings(
    tmp_path: Path, url: str
) -> None:
    line = one_line_error(run_cli(tmp_path / "home", "status", CLIPDEX_QDRANT_URL=url, timeout=120))
    assert line.startswith("clipdex: error: CLIPDEX_QDRANT_URL: ")
    assert "http:// or https://" in line


def test_host_and_port_without_a_scheme_stay_accepted() -> None:
    """qdrant-client reads ``host:port`` as http; so do the settings."""
    assert load_settings(qdrant_url="localhost:6333").qdrant_url == "localhost:6333"


@pytest.fixture
def unreachable_api(tmp_path: Path, library: Path) -> Iterator[tuple[TestClient, str]]:
    """A home with an index, served with a Qdrant URL that nothing answers."""
    embedded = load_settings(home=tmp_path / "home", model="clipdex-tiny")
    encoder = FakeEncoder()
    runtime = open_ready_runtime(embedded, encoder=encoder)
    try:
        ingest(runtime, [library])
    finally:
        runtime.close()
    url = f"http://127.0.0.1:{closed_port()}"
    settings = embedded.model_copy(update={"qdrant_url": url})
    runtime = open_ready_runtime(settings, encoder=encoder)
    try:
        app = create_app(settings, runtime, refresh_interval=0)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, url
    finally:
        runtime.close()


@pytest.mark.corpus
@pytest.mark.parametrize("path", ["/v1/search?q=a+dog", "/v1/status", "/v1/index"])
def test_unreachable_qdrant_is_a_503_with_the_reason(
    unreachable_api: tuple[TestClient, str], path: str
) -> None:
    client, url = unreachable_api
    answer = client.get(path)
    assert answer.status_code == 503, answer.text
    detail = answer.json()["detail"]
    assert f"cannot reach the Qdrant server at {url}" in detail and "refused" in detail


@pytest.mark.corpus
def test_readiness_names_the_unreachable_qdrant(
    unreachable_api: tuple[TestClient, str],
) -> None:
    client, url = unreachable_api
    answer = client.get("/readyz")
    assert answer.status_code == 503, answer.text
    assert answer.json()["status"] == "not ready"
    assert f"cannot reach the Qdrant server at {url}" in answer.json()["detail"]
