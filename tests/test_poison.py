"""One image that kills its worker process must not take its batch down, and dead-lettered
assets can be put back to work (``clipdex retry``). Real Redis, PostgreSQL and worker
processes; the crash is the worker's fault-injection hook (CLIPDEX_FAULT_CRASH_ON_SHA256)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.conftest import cli_env

pytestmark = [pytest.mark.services, pytest.mark.tiny_real]

REDIS_URL = "redis://127.0.0.1:6379/11"  # its own database: test_workers empties 7


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not reachable at 127.0.0.1:6379 (start it; see README)")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def twenty(tmp_path: Path, photos: Path) -> Path:
    root = tmp_path / "twenty"
    root.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:20]:
        shutil.copy2(source, root / source.name)
    return root


def clipdex(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args], env=env, capture_output=True, text=True,
        check=False, timeout=300,
    )  # fmt: skip


def states(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT state, count(*) FROM asset_index_states GROUP BY state")
        ).all()
    engine.dispose()
    return {state: count for state, count in rows}


def settled(database_url: str, timeout: float = 240) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = states(database_url)
        if not any(counts.get(s, 0) for s in ("pending", "queued", "processing")):
            return counts
        time.sleep(0.5)
    raise AssertionError(f"workers did not finish: {states(database_url)}")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "clipdex", "worker", "--concurrency", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_poison_image_is_dead_lettered_alone_and_retry_brings_it_back(
    tmp_path: Path, twenty: Path, fresh_postgres: str, broker: redis.Redis, workers: object
) -> None:
    from core.ids import sha256_of_file

    poison = sorted(twenty.iterdir())[9]  # mid-batch: some encoder batches finish before it
    env = cli_env(
        tmp_path / "home",
        CLIPDEX_DATABASE_URL=fresh_postgres,
        CLIPDEX_BROKER_URL=REDIS_URL,
        CLIPDEX_BATCH_SIZE="4",
        CLIPDEX_TASK_BATCH_SIZE="20",
        CLIPDEX_MAX_ATTEMPTS="3",
    )
    enqueued = clipdex(env, "ingest", str(twenty), "--no-wait", "--json")
    assert json.loads(enqueued.stdout)["queued"] == 20
    assert broker.llen("clipdex") == 1  # the whole library is one task

    crashing = {**env, "CLIPDEX_FAULT_CRASH_ON_SHA256": sha256_of_file(poison)}
    worker = workers(crashing)  # type: ignore[operator]
    counts = settled(fresh_postgres)
    stop(worker)
    assert counts == {"indexed": 19, "failed": 1}
    [failure] = json.loads(clipdex(env, "failures", "--json").stdout)
    assert failure["path"] == str(poison)
    assert "worker died while processing this image 3 times" in failure["reason"]
    assert json.loads(clipdex(env, "status", "--json").stdout)["points"] == 19

    worker = workers(env)  # type: ignore[operator]  # the cause is fixed: a healthy worker
    retried = clipdex(env, "retry", "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout) == {
        "retried": 1, "bad_files_left": 0, "queued": 1, "sent": 1
    }  # fmt: skip
    assert settled(fresh_postgres) == {"indexed": 20}
    stop(worker)
    assert json.loads(clipdex(env, "failures", "--json").stdout) == []
    assert json.loads(clipdex(env, "status", "--json").stdout)["points"] == 20


def test_retry_without_a_broker_leaves_bad_files_unless_asked(tmp_path: Path, twenty: Path) -> None:
    (twenty / "corrupt.jpg").write_bytes(sorted(twenty.iterdir())[0].read_bytes()[:700])
    env = cli_env(tmp_path / "home")
    first = json.loads(clipdex(env, "ingest", str(twenty), "--json").stdout)
    assert (first["encoded"], first["failed"]) == (20, 1)
    catalog = tmp_path / "home" / "catalog.db"
    with sqlite3.connect(catalog) as db:  # as the batch task leaves an asset it gave up on
        [(asset,)] = db.execute(
            "SELECT asset_id FROM locations WHERE path = ?", (str(sorted(twenty.iterdir())[3]),)
        ).fetchall()
        db.execute(
            "UPDATE asset_index_states SET state='failed', attempts=3 WHERE asset_id=?", (asset,)
        )
        db.execute(
            "INSERT INTO failures (path, asset_id, stage, reason, attempts, first_failed_at, "
            "last_failed_at) VALUES (?, ?, 'worker', 'gave up after 3 attempts', 1, "
            "'2020-01-01 00:00:00', '2020-01-01 00:00:00')",
            (str(sorted(twenty.iterdir())[3]), asset),
        )

    early = clipdex(env, "retry", "--failed-before", "2019-06-01T00:00:00+00:00", "--json")
    assert json.loads(early.stdout)["retried"] == 0
    retried = clipdex(env, "retry", "--failed-before", "2021-01-01T00:00:00Z", "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout) == {
        "retried": 1, "bad_files_left": 0, "queued": None, "sent": None
    }  # fmt: skip
    plain = clipdex(env, "retry")
    assert "1 bad files left failed" in plain.stdout
    again = json.loads(clipdex(env, "ingest", str(twenty), "--json").stdout)
    assert again["encoded"] + again["reused"] == 1  # its point was stored: adopted
    with sqlite3.connect(catalog) as db:
        assert db.execute("SELECT count(*) FROM failures WHERE stage='worker'").fetchone() == (0,)

    bad = clipdex(env, "retry", "--include-bad-files", "--json")
    assert json.loads(bad.stdout)["retried"] == 1
    once_more = json.loads(clipdex(env, "ingest", str(twenty), "--json").stdout)
    assert once_more["failed"] == 1  # the corrupt file gives the same answer
    status = json.loads(clipdex(env, "status", "--json").stdout)
    assert {k: v for k, v in status["states"].items() if v} == {"indexed": 20, "failed": 1}
