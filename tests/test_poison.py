"""One image that kills its worker process must not take its batch down, and dead-lettered
assets can be put back to work (``clipdex retry``). Real Redis, PostgreSQL and worker
processes; the crash is the worker's fault-injection hook (CLIPDEX_FAULT_CRASH_ON_SHA256)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import cli_env, closed_port
from tests.workerkit import Workers, clipdex, open_broker, redis_url, settled, stop, worker_env

pytestmark = [pytest.mark.services, pytest.mark.tiny_real]

REDIS_URL = redis_url(11)  # its own database: test_workers empties 7


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    yield from open_broker(REDIS_URL)


@pytest.fixture
def twenty(tmp_path: Path, photos: Path) -> Path:
    root = tmp_path / "twenty"
    root.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:20]:
        shutil.copy2(source, root / source.name)
    return root


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[object]:
    started = Workers(tmp_path)
    yield started.start
    started.stop_all()


def test_a_poison_image_is_dead_lettered_alone_and_retry_brings_it_back(
    tmp_path: Path, twenty: Path, fresh_postgres: str, broker: redis.Redis, workers: object
) -> None:
    from core.ids import sha256_of_file

    poison = sorted(twenty.iterdir())[9]  # mid-batch: some encoder batches finish before it
    env = worker_env(
        tmp_path / "home", fresh_postgres, REDIS_URL,
        CLIPDEX_TASK_BATCH_SIZE="20", CLIPDEX_MAX_ATTEMPTS="3",
    )  # fmt: skip
    enqueued = clipdex(env, "ingest", str(twenty), "--no-wait", "--json")
    assert json.loads(enqueued.stdout)["queued"] == 20
    assert broker.llen("clipdex") == 1  # the whole library is one task

    crashing = {**env, "CLIPDEX_FAULT_CRASH_ON_SHA256": sha256_of_file(poison)}
    worker = workers(crashing)  # type: ignore[operator]
    counts = settled(fresh_postgres, timeout=240)
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
    assert settled(fresh_postgres, timeout=240) == {"indexed": 20}
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

    down = {**env, "CLIPDEX_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    refused = clipdex(down, "retry", "--failed-before", "2021-01-01T00:00:00Z")
    assert refused.returncode == 2 and "cannot reach the broker" in refused.stderr
    with sqlite3.connect(catalog) as db:  # nothing changed: retrying later still finds it
        assert db.execute("SELECT count(*) FROM failures WHERE stage='worker'").fetchone() == (1,)
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
