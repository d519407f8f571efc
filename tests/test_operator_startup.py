"""Settings and start-up mistakes are one line and exit 2 before anything runs: a blob root or
home that is a file (or lies under one), an address ``clipdex serve`` cannot listen on. An
empty ``CLIPDEX_HOME`` is the default home, never the working folder."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import one_line_error, run_cli

pytestmark = pytest.mark.tiny_real


def clipdex(
    home: Path | str, *args: str, cwd: Path | None = None, **extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = run_cli(home, *args, cwd=cwd, timeout=120, settings=extra)
    return done, time.monotonic() - started


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("command", ["status", "serve"])
@pytest.mark.parametrize("under", [False, True])
def test_a_blob_root_that_is_a_file_is_one_line(
    tmp_path: Path, a_file: Path, command: str, under: bool
) -> None:
    blobs = a_file / "blobs" if under else a_file
    done, _ = clipdex(tmp_path / "home", command, CLIPDEX_BLOB_ROOT=str(blobs))
    line = one_line_error(done)  # serve used to start, then answer uploads with a 500
    assert line == f"clipdex: error: CLIPDEX_BLOB_ROOT: Value error, {a_file} is not a folder"


def test_a_home_that_is_a_file_is_one_line_naming_the_variable(a_file: Path) -> None:
    done, _ = clipdex(a_file, "status")
    line = one_line_error(done)
    assert line == f"clipdex: error: CLIPDEX_HOME: Value error, {a_file} is not a folder"


def test_an_empty_home_is_the_default_home_not_the_working_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    data = tmp_path / "xdg-data"
    done, _ = clipdex("", "status", "--json", cwd=work, XDG_DATA_HOME=str(data))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["home"] == str(data / "clipdex")
    assert list(work.iterdir()) == []  # no catalog.db in the working folder
    assert (data / "clipdex" / "catalog.db").is_file()


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid", "192.0.2.1"])
def test_serve_on_an_address_it_cannot_listen_on_is_one_line(tmp_path: Path, host: str) -> None:
    done, seconds = clipdex(
        tmp_path / "home", "serve", "--port", "0", CLIPDEX_API_HOST=host, CLIPDEX_API_READ_KEYS="r"
    )
    line = one_line_error(done)  # uvicorn's log lines and exit status 3 before
    assert line.startswith(f"clipdex: error: cannot serve on {host} port 0 (")
    assert "CLIPDEX_API_HOST" in line
    assert seconds < 60
    assert not (tmp_path / "home" / "serve.json").exists()


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        done, _ = clipdex(tmp_path / "home", "serve", "--port", str(port))
    line = one_line_error(done)
    assert line.endswith(f"cannot serve on 127.0.0.1 port {port} "
                         "(--host/CLIPDEX_API_HOST, --port/CLIPDEX_API_PORT): "
                         "Address already in use")  # fmt: skip


def test_empty_service_urls_are_unset() -> None:
    """``CLIPDEX_QDRANT_URL=`` left empty by a compose file is the embedded store, the same for
    every command (serve and the CLI disagreed: one tested it as text, one as None)."""
    from core.settings import load_settings

    settings = load_settings(qdrant_url="", broker_url=" ", database_url="")
    assert (settings.qdrant_url, settings.broker_url, settings.database_url) == (None, None, None)
    assert settings.catalog_url.startswith("sqlite")
