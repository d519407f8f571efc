"""A worker whose runtime cannot start exits at once with one line and takes no task; a
reconcile whose sends fail says so. Real Redis, PostgreSQL and ``clipdex`` processes."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.workerkit import clipdex, open_broker, redis_url, states, worker_env

pytestmark = [pytest.mark.services, pytest.mark.tiny_real]

REDIS_URL = redis_url(12)  # its own database: test_workers empties 7


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    yield from open_broker(REDIS_URL)


@pytest.fixture
def env(tmp_path: Path, fresh_postgres: str, broker: redis.Redis) -> dict[str, str]:
    return worker_env(tmp_path / "home", fresh_postgres, REDIS_URL)


@pytest.fixture
def few(tmp_path: Path, photos: Path) -> Path:
    root = tmp_path / "few"
    root.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:6]:
        shutil.copy2(source, root / source.name)
    return root


def test_a_worker_whose_store_is_locked_exits_before_taking_work(
    env: dict[str, str], few: Path, broker: redis.Redis, tmp_path: Path
) -> None:
    from core.settings import load_settings
    from core.store.factory import open_store

    enqueued = clipdex(env, "ingest", str(few), "--no-wait", "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    assert json.loads(enqueued.stdout)["queued"] == 6
    assert broker.llen("clipdex") == 2
    settings = load_settings(
        home=tmp_path / "home", model="clipdex-tiny", database_url=env["CLIPDEX_DATABASE_URL"]
    )
    store = open_store(settings)  # another process holds the embedded store
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "clipdex", "worker", "--concurrency", "1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=60)
            pytest.fail(f"the worker kept running on a store it cannot open:\n{stderr[-3000:]}")
    finally:
        store.close()
    assert worker.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("clipdex: error: worker cannot start: ")
    assert "embedded vector store" in lines[0] and "CLIPDEX_QDRANT_URL" in lines[0]
    assert broker.llen("clipdex") == 2  # nothing consumed
    assert states(env["CLIPDEX_DATABASE_URL"]) == {"queued": 6}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the probe goes


def test_reconcile_says_when_the_broker_took_nothing(
    env: dict[str, str], few: Path, broker: redis.Redis
) -> None:
    enqueued = clipdex(env, "ingest", str(few), "--no-wait", "--json")
    assert json.loads(enqueued.stdout)["queued"] == 6
    broker.flushdb()  # the queue is lost; the outbox still has the work

    dead = {**env, "CLIPDEX_BROKER_URL": f"redis://127.0.0.1:{_closed_port()}/0"}
    started = time.monotonic()
    failed = clipdex(dead, "reconcile", "--older-than", "0", "--json")
    assert time.monotonic() - started < 120
    assert failed.returncode == 2, failed.stderr  # the broker is checked before any round
    assert failed.stdout == "" and "cannot reach the broker" in failed.stderr
    assert states(env["CLIPDEX_DATABASE_URL"]) == {"queued": 6}  # kept for the next round

    sent = clipdex(env, "reconcile", "--older-than", "0", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == {"requeued": 6, "sent": 6}
    assert broker.llen("clipdex") == 2
