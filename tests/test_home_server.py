"""One home, many commands: while a real `clipdex serve` owns an embedded home, `clipdex ingest`,
`status` and `search` on that home work through it with the same output; searches never fail
meanwhile; a server killed with SIGKILL mid-ingest loses nothing (restart, run again: exact)."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from clipdex.homeserver import claim_path
from core.runtime import Runtime
from tests.conftest import cli_env
from tests.home_serve import clipdex, serving

QUERY = "a dog on the beach"


def _copy(sources: list[Path], folder: Path, rotated: bool = False) -> list[Path]:
    folder.mkdir(parents=True)
    made = []
    for source in sources:
        target = folder / (("r-" if rotated else "") + source.name)
        if rotated:  # other bytes: a new asset
            with Image.open(source) as image:
                image.rotate(90, expand=True).save(target, "JPEG")
        else:
            shutil.copy2(source, target)
        made.append(target.resolve())
    return made


def _indexed(home: Path) -> int:
    with sqlite3.connect(home / "catalog.db") as db:
        row = db.execute(
            "SELECT count(*) FROM asset_index_states WHERE state = 'indexed'"
        ).fetchone()
    return int(row[0])


def _exact(env: dict[str, str], files: int) -> None:
    status = json.loads(clipdex(env, "status", "--json").stdout)
    assert status["indexed"] == status["points"] == status["assets"] == files
    assert status["failures"] == 0


@pytest.mark.tiny_real
def test_commands_go_through_serve_and_a_killed_server_loses_nothing(
    tmp_path: Path, photos: Path
) -> None:
    jpgs = sorted(photos.glob("*.jpg"))
    first = _copy(jpgs[:8], tmp_path / "first")
    second = _copy(jpgs[8:20], tmp_path / "second")
    third = _copy(jpgs[20:], tmp_path / "third") + _copy(jpgs, tmp_path / "third" / "r", True)
    home = tmp_path / "home"
    env = cli_env(home, CLIPDEX_DEVICE="cpu", CLIPDEX_BATCH_SIZE="2")
    clipdex(env, "ingest", str(tmp_path / "first"))
    reads = [("status",), ("status", "--json"), ("search", QUERY), ("search", QUERY, "--json")]
    alone = [clipdex(env, *args).stdout for args in reads]

    with serving(home, env, tmp_path / "serve.log") as (process, server):
        # The server holds the store: these answers came through it, and equal the local ones.
        assert [clipdex(env, *args).stdout for args in reads] == alone
        outcomes: list[int] = []
        stop = threading.Event()

        def searching() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not stop.is_set():
                    response = client.get("/v1/search", params={"q": QUERY, "limit": 100})
                    outcomes.append(response.status_code)

        searcher = threading.Thread(target=searching)
        searcher.start()
        try:
            report = json.loads(clipdex(env, "ingest", str(tmp_path / "second"), "--json").stdout)
        finally:
            stop.set()
            searcher.join()
        assert report["new"] == report["encoded"] == len(second) and report["failed"] == 0
        assert outcomes and all(code == 200 for code in outcomes), outcomes
        hits = json.loads(clipdex(env, "search", QUERY, "--limit", "100", "--json").stdout)
        assert {hit["path"] for hit in hits} == {str(p) for p in first + second}
        _exact(env, len(first) + len(second))

        # SIGKILL the server in the middle of an ingest running through it.
        child = subprocess.Popen(
            [sys.executable, "-m", "clipdex", "ingest", str(tmp_path / "third"), "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        before = len(first) + len(second)
        deadline = time.monotonic() + 300
        while _indexed(home) < before + 4 and child.poll() is None:
            assert time.monotonic() < deadline, "the ingest through the server did not start"
            time.sleep(0.02)
        assert child.poll() is None, "the ingest finished before the server could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        _, errors = child.communicate(timeout=120)
        assert child.returncode == 2 and "stopped answering" in errors, errors
        assert before + 4 <= _indexed(home) < before + len(third)

    assert claim_path(home).exists()  # left by the killed server: a dead pid, ignored
    with serving(home, env, tmp_path / "serve.log") as (process, server):
        again = json.loads(clipdex(env, "ingest", str(tmp_path / "third"), "--json").stdout)
        assert again["failed"] == 0 and again["encoded"] + again["reused"] <= len(third)
        _exact(env, before + len(third))
    assert not claim_path(home).exists()  # a clean stop removes it
    _exact(env, before + len(third))  # and the commands open the home themselves again


@pytest.mark.tiny_real
def test_a_server_stopped_with_sigterm_leaves_its_writes_in_the_catalog_file(
    tmp_path: Path, photos: Path
) -> None:
    """systemd and docker stop with SIGTERM: what the server wrote must be in catalog.db
    itself (no WAL left beside it), so a backup of the catalog file holds it."""
    home = tmp_path / "home"
    env = cli_env(home, CLIPDEX_DEVICE="cpu")
    jpgs = sorted(photos.glob("*.jpg"))
    clipdex(env, "ingest", str(_copy(jpgs[:2], tmp_path / "first")[0].parent))
    with serving(home, env, tmp_path / "serve.log") as (process, _):
        clipdex(env, "ingest", str(_copy(jpgs[2:5], tmp_path / "second")[0].parent))
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert not (home / "catalog.db-wal").exists()
    backup = tmp_path / "backup.db"
    shutil.copy2(home / "catalog.db", backup)  # the catalog file alone, as a backup copies it
    connection = sqlite3.connect(backup)
    try:
        (count,) = connection.execute(
            "SELECT count(*) FROM asset_index_states WHERE state = 'indexed'"
        ).fetchone()
    finally:
        connection.close()
    assert count == 5


@pytest.mark.unit
def test_a_claim_of_a_dead_or_silent_server_is_ignored(tmp_path: Path) -> None:
    from clipdex.homeserver import HomeServer, live_server, remove_claim, write_claim

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_claim(tmp_path, HomeServer("http://127.0.0.1:9", dead.pid, "secret"))
    assert claim_path(tmp_path).stat().st_mode & 0o777 == 0o600  # the token is a key
    assert live_server(tmp_path) is None  # dead pid
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_claim(tmp_path, HomeServer("http://127.0.0.1:9", sleeper.pid, "secret"))
        assert live_server(tmp_path) is None  # alive, but nothing answers at that URL
        remove_claim(tmp_path, dead.pid)  # not its claim: kept
        assert claim_path(tmp_path).exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.unit
def test_a_claim_answered_by_another_homes_server_is_ignored(
    tmp_path: Path, runtime: Runtime
) -> None:
    """A killed server's ``serve.json`` whose pid the system gave to another process, and
    whose port another home's server now listens on: commands must not work through that
    server (it answered from the wrong home). Only the server holding the claim's token is
    this home's. A pid of 0, -1 or one no system has is no live server either."""
    from clipdex.homeserver import HomeServer, live_server, write_claim
    from clipdex.http import create_app
    from tests.server import serve

    other = create_app(runtime.settings, runtime, local_token="other-homes-token")  # noqa: S106
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    home = tmp_path / "this-home"
    try:
        with serve(other) as url:
            write_claim(home, HomeServer(url, sleeper.pid, "stale-token"))
            assert live_server(home) is None  # alive pid, answering URL, not its token
            write_claim(home, HomeServer(url, sleeper.pid, "other-homes-token"))
            assert live_server(home) == HomeServer(url, sleeper.pid, "other-homes-token")
            for pid in (0, -1, 2**70):
                write_claim(home, HomeServer(url, pid, "other-homes-token"))
                assert live_server(home) is None
            write_claim(home, HomeServer("http://[::1", sleeper.pid, "t"))  # a broken file
            assert live_server(home) is None
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.unit
def test_the_local_token_may_run_admin_jobs_that_a_read_key_may_not(
    tmp_path: Path, library: Path
) -> None:
    from fastapi.testclient import TestClient

    from clipdex.catalog import open_ready_runtime
    from clipdex.http import create_app
    from core.settings import load_settings
    from tests.fakes import FakeEncoder

    settings = load_settings(
        home=tmp_path / "home", model="clipdex-tiny", api_read_keys="reader",
        api_write_keys="writer", batch_size=4,
    )  # fmt: skip
    runtime = open_ready_runtime(settings, encoder=FakeEncoder())
    app = create_app(settings, runtime, local_token="local-token")  # noqa: S106 (a test key)
    try:
        with TestClient(app) as client:
            body = {"paths": [str(library)]}
            assert client.post("/v1/admin/ingest", json=body).status_code == 401
            denied = client.post("/v1/admin/ingest", json=body, headers={"X-API-Key": "reader"})
            assert denied.status_code == 403
            # A write key may ingest only under CLIPDEX_ALLOWED_IMAGE_ROOTS (none here); the
            # local CLI's token may ingest any folder of the server.
            writer = {"X-API-Key": "writer"}
            outside = client.post("/v1/admin/ingest", json=body, headers=writer)
            assert outside.status_code == 403 and "ALLOWED_IMAGE_ROOTS" in outside.text
            probe = client.post("/v1/admin/ingest", json={"paths": ["/no/such"]}, headers=writer)
            assert probe.status_code == 403  # whether it exists is not told
            for order in ({"model": "ViT-B-32", "pretrained": "/etc/passwd"},
                          {"model": "hf-hub:someone/model"}):  # fmt: skip
                weights = client.post("/v1/admin/reindex", json=order, headers=writer)
                assert weights.status_code == 403 and "local CLI" in weights.text
            for order, words in (
                ({"model": "ViT-B-99"}, "unknown model architecture 'ViT-B-99'"),
                ({"model": "ViT-B-32", "pretrained": "laion9000"}, "no pretrained weights"),
            ):  # a misspelt model is the caller's mistake: 422 at once, and no job starts
                typo = client.post("/v1/admin/reindex", json=order, headers=writer)
                assert typo.status_code == 422 and words in typo.json()["detail"], typo.text
            token = {"X-API-Key": "local-token"}
            for bad in (["relative/folder"], ["/" + "x" * 4000]):
                refused = client.post("/v1/admin/ingest", json={"paths": bad}, headers=token)
                assert refused.status_code == 422, refused.text
            missing = client.post("/v1/admin/ingest", json={"paths": ["/no/such"]}, headers=token)
            assert missing.status_code == 422 and "no such file" in missing.json()["detail"]
            job = client.post("/v1/admin/ingest", json=body, headers=token).json()
            deadline = time.monotonic() + 120
            while job["state"] == "running":
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
                job = client.get(f"/v1/admin/jobs/{job['id']}", headers=token).json()
            assert job["state"] == "done" and job["report"]["encoded"] == 8, job
            status = client.get("/v1/status", headers={"X-API-Key": "reader"}).json()
            assert status["indexed"] == status["points"] == 8
    finally:
        runtime.close()
