"""Reindex through real workers: Redis, PostgreSQL, ``clipdex worker`` processes and a shared
Qdrant-compatible store (``tests/qdrant_shim.py``: this machine has no Qdrant server, and the
embedded store admits one process, while here the workers and the reindex command share one).

From clipdex-tiny to a random-weight ViT-B-32: each task names its version and the worker
encodes with that version's model into that version's collection only."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.workerkit import (
    Workers,
    clipdex,
    indexed,
    open_broker,
    query,
    redis_url,
    settled,
    stop,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.services, pytest.mark.tiny_real]

REDIS_URL = redis_url(14)  # its own: 7, 9, 11, 12, 13 and 15 belong to other tests
NEW_MODEL = ("--model", "ViT-B-32", "--pretrained", "random")


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    yield from open_broker(REDIS_URL)


@pytest.fixture
def qdrant_url(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    log = (tmp_path / "qdrant-shim.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.qdrant_shim", str(port)], stdout=log, stderr=log
    )
    wait_for(lambda: _answers(port), timeout=60)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def env(
    tmp_path: Path, fresh_postgres: str, broker: redis.Redis, qdrant_url: str
) -> dict[str, str]:
    return worker_env(
        tmp_path / "home", fresh_postgres, REDIS_URL,
        CLIPDEX_QDRANT_URL=qdrant_url, CLIPDEX_DEVICE="cpu", CLIPDEX_BATCH_SIZE="2",
        CLIPDEX_TASK_BATCH_SIZE="6", CLIPDEX_TASK_SOFT_TIME_LIMIT="240",
        CLIPDEX_TASK_TIME_LIMIT="250", CLIPDEX_RECONCILE_AFTER_SECONDS="260",
    )  # fmt: skip


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def library(tmp_path: Path, photos: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:20]:
        shutil.copy2(source, root / source.name)
    return root


def _ingested(env: dict[str, str], library: Path, workers: Workers) -> subprocess.Popen[bytes]:
    """Migrate, ingest the library with clipdex-tiny through one worker; that worker stays."""
    migrated = clipdex(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    worker = workers.start(env)
    done = clipdex(env, "ingest", str(library), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["states"]["indexed"] == 20
    return worker


def _collection(env: dict[str, str], version_id: int) -> str:
    sql = "SELECT collection FROM index_versions WHERE id = :id"
    [(name,)] = query(env["CLIPDEX_DATABASE_URL"], sql, id=version_id)
    return str(name)


def _points(env: dict[str, str], version_id: int) -> dict[str, list[float]]:
    """Every point of a version's collection with its vector, read from the shared store."""
    from qdrant_client import QdrantClient

    client = QdrantClient(url=env["CLIPDEX_QDRANT_URL"], timeout=30)
    records, _ = client.scroll(
        _collection(env, version_id), limit=10_000, with_vectors=True, with_payload=False
    )
    client.close()
    vectors: dict[str, list[float]] = {}
    for record in records:
        vector: Any = record.vector
        if isinstance(vector, dict):  # named vectors (dense plus sparse keywords): the dense one
            vector = next(v for v in vector.values() if isinstance(v, list))
        vectors[str(record.id)] = [float(x) for x in vector]
    assert all(len(v) > 2 for v in vectors.values()), "not the dense vectors"
    return vectors


def _exact(env: dict[str, str], report: dict[str, Any]) -> None:
    """The new version's indexed set == its points == the old version's indexed set."""
    database = env["CLIPDEX_DATABASE_URL"]
    assert report["swapped"] and report["state"] == "live", report
    assert report["indexed"] == 20 == report["points"]
    new = indexed(database, report["version"])
    assert new == set(_points(env, report["version"])) == indexed(database, report["previous"])


def _batch_lines(log: Path, version_id: int) -> list[dict[str, int]]:
    """The outcome of every batch a worker finished for one version (its log lines)."""
    marker = f" for version {version_id}: "
    return [
        json.loads(line.split(marker, 1)[1].replace("'", '"'))
        for line in log.read_text(errors="replace").splitlines()
        if marker in line
    ]


def test_reindex_through_two_workers_is_exact_and_stale_tasks_change_nothing(
    env: dict[str, str], library: Path, workers: Workers, tmp_path: Path
) -> None:
    _ingested(env, library, workers)
    workers.start(env)  # a second worker, on another process
    done = clipdex(env, "reindex", *NEW_MODEL, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    _exact(env, report)
    assert report["queued"] == 20 and report["encoded"] == 20
    new, old = report["version"], report["previous"]
    logs = [tmp_path / f"worker-{n}.log" for n in (0, 1)]
    per_worker = [sum(b["encoded"] for b in _batch_lines(log, new)) for log in logs]
    assert sum(per_worker) == 20 and all(per_worker), per_worker  # both took a share

    # A message of the old version arrives after the swap (a slow broker, a reconcile): its
    # rows are open again, as they would be while it was in flight, and their points are not
    # stored yet, so the worker must encode them (with the old model).
    before = _points(env, new)
    stale = sorted(indexed(env["CLIPDEX_DATABASE_URL"], old))[:3]
    _reopen(env, old, stale)
    _forget_points(env, old, stale)
    _send(env, old, stale)
    wait_for(lambda: stale[0] in indexed(env["CLIPDEX_DATABASE_URL"], old) and _settled(env))
    assert _points(env, new) == before  # the new collection: same points, same vectors
    rewritten = _points(env, old)
    assert set(stale) <= set(rewritten) and len(rewritten) == 20
    assert {len(rewritten[a]) for a in stale} == {32}  # by the old model, into its collection

    # After `index drop` of the old version, its tasks are skipped with a log line.
    assert clipdex(env, "index", "drop", str(old)).returncode == 0
    _send(env, old, stale)
    wait_for(lambda: any("was dropped" in log.read_text() for log in logs), timeout=120)
    assert _points(env, new) == before
    assert settled(env["CLIPDEX_DATABASE_URL"]) == {"indexed": 20}


def _settled(env: dict[str, str]) -> bool:
    rows = query(
        env["CLIPDEX_DATABASE_URL"],
        "SELECT count(*) FROM asset_index_states WHERE state IN ('pending','queued','processing')",
    )
    return int(rows[0][0]) == 0


def _reopen(env: dict[str, str], version_id: int, ids: list[str]) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(env["CLIPDEX_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE asset_index_states SET state = 'queued', attempts = 0 "
                "WHERE index_version_id = :v AND asset_id = ANY(:ids)"
            ),
            {"v": version_id, "ids": ids},
        )
    engine.dispose()


def _forget_points(env: dict[str, str], version_id: int, ids: list[str]) -> None:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(url=env["CLIPDEX_QDRANT_URL"], timeout=30)
    selector = models.PointIdsList(points=list(ids))
    client.delete(_collection(env, version_id), points_selector=selector, wait=True)
    client.close()


def _send(env: dict[str, str], version_id: int, ids: list[str]) -> None:
    """Send one batch message by hand, as a stale producer would."""
    from core.settings import load_settings
    from workers.app import make_celery, sender

    settings = load_settings(home=Path(env["CLIPDEX_HOME"]), broker_url=env["CLIPDEX_BROKER_URL"])
    sender(make_celery(settings))(version_id, ids)


def test_a_worker_killed_mid_batch_still_gives_an_exact_reindex_encoding_nothing_twice(
    env: dict[str, str], library: Path, workers: Workers, tmp_path: Path
) -> None:
    database = env["CLIPDEX_DATABASE_URL"]
    first = _ingested(env, library, workers)
    stop(first)
    # The crash: the worker's fault-injection hook SIGKILLs its pool child just before it
    # encodes one image of the second task (the first task is done by then).
    ids = sorted(indexed(database, 1))
    [(sha256,)] = query(database, "SELECT sha256 FROM assets WHERE id = :id", id=ids[8])
    crashing = workers.start({**env, "CLIPDEX_FAULT_CRASH_ON_SHA256": sha256})
    reindexing = subprocess.Popen(
        [sys.executable, "-m", "clipdex", "reindex", *NEW_MODEL, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    crash_log = tmp_path / "worker-1.log"
    try:
        wait_for(lambda: "fault injection" in crash_log.read_text(), timeout=240)
        # Its pool child is dead mid-batch. Stop the worker before a new child is ready: the
        # message it held goes back to the queue (late ack), for the healthy workers.
        stop(crashing)
        stored = indexed(database, 2)
        assert 6 <= len(stored) < 20, "the crash was not mid-run"
        workers.start(env)
        workers.start(env)
        out, err = reindexing.communicate(timeout=400)
    finally:
        if reindexing.poll() is None:
            reindexing.kill()
    assert reindexing.returncode == 0, err
    report = json.loads(out)
    _exact(env, report)
    batches = [b for n in (2, 3) for b in _batch_lines(tmp_path / f"worker-{n}.log", 2)]
    encoded = sum(b["encoded"] for b in batches)
    reused = sum(b["reused"] for b in batches)
    assert encoded + reused == 20 - len(stored)  # what the killed worker stored was kept
    time.sleep(1)
    assert settled(database) == {"indexed": 40}
