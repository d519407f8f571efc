"""Paths a user types (`~name` with no such user, a NUL, a lone surrogate) are refused or taken
literally, as a shell would: over HTTP a 4xx with a message, never a 500 (a fuzz run found
``POST /v1/libraries`` answering 500 to ``{"path": "~0"}``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from clipdex.http import create_app
from core.paths import UnusablePath, expand_user, resolved
from core.runtime import Runtime
from ingest.run import ingest
from tests.conftest import cli_env

pytestmark = pytest.mark.unit

NO_SUCH_USER = "~clipdex-no-such-user"
BAD = [NO_SUCH_USER, "~0/photos", "a\0b", "~\0", "lone\ud800surrogate", "x" * 4000]


def test_a_tilde_word_that_names_no_home_stays_literal(tmp_path: Path) -> None:
    assert expand_user(Path(NO_SUCH_USER) / "x") == Path(NO_SUCH_USER) / "x"
    assert expand_user(Path("~")) == Path.home()
    assert resolved(Path(NO_SUCH_USER), tmp_path) == tmp_path.resolve() / NO_SUCH_USER
    assert resolved(Path("~/a")) == Path.home().resolve() / "a"
    for bad in ("a\0b", "lone\ud800surrogate"):
        with pytest.raises(UnusablePath):
            resolved(Path(bad))


def test_odd_paths_over_http_are_4xx_with_a_message(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    loop = library / "loop"
    loop.symlink_to("loop")  # resolving it raises RuntimeError, not OSError, before 3.13
    keys = {
        "api_write_keys": [SecretStr("w")],
        "api_read_keys": [SecretStr("r")],
        "allowed_image_roots": [library],
    }
    settings = runtime.settings.model_copy(update=keys)
    write = {"X-API-Key": "w", "Content-Type": "application/json"}  # JSON escapes a surrogate
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
        for bad in [*BAD, str(loop), f"{loop}/a.jpg"]:
            answers = {
                route: client.post(route, content=json.dumps(body), headers=write)
                for route, body in (
                    ("/v1/libraries", {"path": bad}),
                    ("/v1/search", {"terms": [{"path": bad}]}),
                    ("/v1/admin/ingest", {"paths": [bad]}),
                )
            }
            for name, answer in answers.items():
                assert 400 <= answer.status_code < 500, (name, repr(bad), answer.text)
                assert answer.json()["detail"], (name, repr(bad))
        listed = client.get("/v1/libraries", headers=write)
        assert listed.status_code == 200 and listed.json() == []


def test_the_cli_takes_a_tilde_word_literally(tmp_path: Path, library: Path) -> None:
    """`clipdex library add ~nosuchuser` is an ordinary missing folder: one line, no traceback."""
    home = tmp_path / "home"
    env = cli_env(home)
    run = subprocess.run(
        [sys.executable, "-m", "clipdex", "library", "add", NO_SUCH_USER],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0
    assert "Traceback" not in run.stderr and "not a folder" in run.stderr, run.stderr
    (tmp_path / NO_SUCH_USER).mkdir()
    os.symlink(library, tmp_path / NO_SUCH_USER / "photos")
    run = subprocess.run(
        [sys.executable, "-m", "clipdex", "library", "add", f"{NO_SUCH_USER}/photos"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_allowed_roots_are_resolved_once_in_settings(
    tmp_path: Path, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root given through a symlink or relative to the working folder admits the images
    under its real location; the settings hold the resolved roots, not each check."""
    from core.settings import Settings
    from search.query import BadQuery, path_term

    os.symlink(library, tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLIPDEX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLIPDEX_ALLOWED_IMAGE_ROOTS", f"{tmp_path / 'link'},relative")
    settings = Settings()
    assert settings.allowed_image_roots == [library.resolve(), tmp_path.resolve() / "relative"]
    image = next(library.glob("*.jpg")).resolve()
    assert path_term(str(image), settings.allowed_image_roots) == image
    with pytest.raises(BadQuery):
        path_term(str(tmp_path / "elsewhere.jpg"), settings.allowed_image_roots)
