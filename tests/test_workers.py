"""Distributed ingest with real services: the machine's Redis and PostgreSQL and a real Celery
worker process. The embedded store admits one process, so the worker is the only one holding
it while it runs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.workerkit import (
    Workers,
    clipdex,
    indexed,
    open_broker,
    query,
    redis_url,
    settled,
    spawn_worker,
    states,
    stop,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.services, pytest.mark.tiny_real]

REDIS_URL = redis_url(7)  # a database of its own, emptied by each test


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    yield from open_broker(REDIS_URL)


@pytest.fixture
def env(tmp_path: Path, fresh_postgres: str, broker: redis.Redis) -> dict[str, str]:
    return worker_env(tmp_path / "home", fresh_postgres, REDIS_URL)


@pytest.fixture
def library(tmp_path: Path, photos: Path, pillow_images: Path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:20]:
        shutil.copy2(source, root / source.name)
    (root / "corrupt.jpg").write_bytes(
        (root / sorted(p.name for p in root.iterdir())[0]).read_bytes()[:700]
    )
    shutil.copy2(pillow_images / "decompression_bomb.gif", root / "bomb.gif")
    return root


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    workers = Workers(tmp_path, own_group=False)

    def start() -> subprocess.Popen[bytes]:
        if not workers.started:  # as compose's one-shot migrate service: workers only check
            migrated = clipdex(env, "migrate")
            assert migrated.returncode == 0, migrated.stderr
        return workers.start(env)

    yield start
    workers.stop_all()


def test_worker_indexes_batches_and_records_bad_files(
    env: dict[str, str], library: Path, broker: redis.Redis, start_worker: object
) -> None:
    enqueued = clipdex(env, "ingest", str(library), "--no-wait", "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    assert json.loads(enqueued.stdout)["queued"] == 22
    assert broker.llen("clipdex") == 6  # one task per batch of 4 ids, never one per image

    worker = start_worker()  # type: ignore[operator]
    counts = settled(env["CLIPDEX_DATABASE_URL"])
    stop(worker)
    assert counts == {"indexed": 20, "failed": 2}

    status = json.loads(clipdex(env, "status", "--json").stdout)
    assert status["points"] == status["indexed"] == 20
    failures = {
        Path(f["path"]).name: f for f in json.loads(clipdex(env, "failures", "--json").stdout)
    }
    assert set(failures) == {"corrupt.jpg", "bomb.gif"}
    assert "decompression bomb" in failures["bomb.gif"]["reason"]
    assert all(f["attempts"] == 1 for f in failures.values())  # decode errors are not retried


def test_a_broker_that_loses_its_queue_loses_nothing(
    env: dict[str, str], library: Path, broker: redis.Redis, start_worker: object
) -> None:
    enqueued = clipdex(env, "ingest", str(library), "--no-wait", "--json")
    assert json.loads(enqueued.stdout)["queued"] == 22
    broker.flushdb()  # what a Redis without persistence looks like after a restart
    worker = start_worker()  # type: ignore[operator]
    time.sleep(3)
    assert states(env["CLIPDEX_DATABASE_URL"]) == {"queued": 22}  # nothing arrives

    requeued = clipdex(env, "reconcile", "--older-than", "0", "--json")
    assert requeued.returncode == 0, requeued.stderr
    assert json.loads(requeued.stdout) == {"requeued": 22, "sent": 22}
    counts = settled(env["CLIPDEX_DATABASE_URL"])
    stop(worker)
    assert counts == {"indexed": 20, "failed": 2}
    status = json.loads(clipdex(env, "status", "--json").stdout)
    assert status["points"] == 20


def test_every_batch_delivered_twice_still_indexes_each_image_once(
    env: dict[str, str], library: Path, broker: redis.Redis, start_worker: object
) -> None:
    """What Redis does to a task that outlives its visibility timeout, or to one whose worker
    died after the upsert: the same message again. Here every message is duplicated."""
    enqueued = clipdex(env, "ingest", str(library), "--no-wait", "--json")
    assert json.loads(enqueued.stdout)["queued"] == 22
    messages = broker.lrange("clipdex", 0, -1)
    for message in messages:
        broker.lpush("clipdex", message)
    assert broker.llen("clipdex") == 12

    worker = start_worker()  # type: ignore[operator]
    deadline = time.monotonic() + 180
    while broker.llen("clipdex") and time.monotonic() < deadline:
        time.sleep(0.5)
    counts = settled(env["CLIPDEX_DATABASE_URL"])
    time.sleep(2)  # let the last duplicate finish
    stop(worker)
    assert counts == {"indexed": 20, "failed": 2}

    [(rows, attempts)] = query(
        env["CLIPDEX_DATABASE_URL"], "SELECT count(*), max(attempts) FROM asset_index_states"
    )
    assert rows == 22 and attempts == 1  # the second delivery found the work done
    status = json.loads(clipdex(env, "status", "--json").stdout)
    assert status["points"] == 20


def _derived(photos: Path, root: Path) -> set[str]:
    """306 distinct files: each COCO photo re-saved at six JPEG qualities."""
    from PIL import Image

    from core.ids import asset_id_for_digest, sha256_of_file

    root.mkdir()
    ids = set()
    for source in sorted(photos.glob("*.jpg")):
        with Image.open(source) as image:
            for quality in (60, 68, 76, 84, 90, 95):
                target = root / f"{source.stem}-q{quality}.jpg"
                image.save(target, quality=quality)
                ids.add(asset_id_for_digest(sha256_of_file(target)))
    return ids


def test_kill_9_child_then_whole_worker_loses_and_duplicates_nothing(
    env: dict[str, str], photos: Path, tmp_path: Path, broker: redis.Redis
) -> None:
    import os

    expected = _derived(photos, tmp_path / "many")
    database = env["CLIPDEX_DATABASE_URL"]
    enqueued = clipdex(env, "ingest", str(tmp_path / "many"), "--no-wait", "--json")
    assert json.loads(enqueued.stdout)["queued"] == len(expected) == 306

    def spawn() -> subprocess.Popen[bytes]:
        return spawn_worker(env, tmp_path / f"worker-{time.monotonic_ns()}.log")

    worker = spawn()
    try:
        wait_for(lambda: len(indexed(database)) >= 40)
        children = subprocess.run(
            ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert children, "no pool child found"
        os.kill(int(children[0]), signal.SIGKILL)  # mid-batch: reject_on_worker_lost requeues
        before = len(indexed(database))
        wait_for(lambda: len(indexed(database)) >= before + 60)
        os.killpg(worker.pid, signal.SIGKILL)  # the whole worker, pool and all
        worker.wait()
        assert len(indexed(database)) < 306, "the run finished before the kill"

        worker = spawn()
        requeued = clipdex(env, "reconcile", "--older-than", "0", "--json")
        assert requeued.returncode == 0, requeued.stderr
        counts = settled(database, timeout=300)
        wait_for(lambda: broker.llen("clipdex") == 0)
        time.sleep(2)
    finally:
        stop(worker)
    assert counts == {"indexed": 306}
    assert indexed(database) == expected
    status = json.loads(clipdex(env, "status", "--json").stdout)
    assert status["points"] == 306  # one point per image: no duplicates, nothing lost


def test_ingest_waits_for_the_workers_and_reports_the_outcome(
    env: dict[str, str], library: Path, start_worker: object
) -> None:
    worker = start_worker()  # type: ignore[operator]
    result = clipdex(env, "ingest", str(library), "--json")  # waits until workers are done
    stop(worker)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["queued"] == 22
    assert report["states"]["indexed"] == 20 and report["states"]["failed"] == 2
    assert report["states"]["queued"] == report["states"]["processing"] == 0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_redis(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    wait_for(lambda: _pings(client), timeout=20)
    return process


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_redis_killed_and_restarted_empty_loses_nothing(
    env: dict[str, str], library: Path, tmp_path: Path, start_worker: object
) -> None:
    port = _free_port()
    own = {**env, "CLIPDEX_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    server = _start_redis(port, tmp_path)
    try:
        enqueued = clipdex(own, "ingest", str(library), "--no-wait", "--json")
        assert json.loads(enqueued.stdout)["queued"] == 22
        assert redis.Redis(port=port).llen("clipdex") == 6
        server.kill()  # SIGKILL: no persistence, the queue is gone
        server.wait()
        server = _start_redis(port, tmp_path)
        assert redis.Redis(port=port).llen("clipdex") == 0

        env.update(own)  # the worker fixture starts with this environment
        worker = start_worker()  # type: ignore[operator]
        requeued = clipdex(own, "reconcile", "--older-than", "0", "--json")
        assert json.loads(requeued.stdout) == {"requeued": 22, "sent": 22}
        counts = settled(own["CLIPDEX_DATABASE_URL"])
        stop(worker)
    finally:
        server.kill()
        server.wait()
    assert counts == {"indexed": 20, "failed": 2}
    assert json.loads(clipdex(own, "status", "--json").stdout)["points"] == 20


def test_catalog_connections_killed_mid_run_recover(
    env: dict[str, str], photos: Path, tmp_path: Path, start_worker: object
) -> None:
    expected = _derived(photos, tmp_path / "many")
    database = env["CLIPDEX_DATABASE_URL"]
    name = database.rsplit("/", 1)[1]
    assert json.loads(clipdex(env, "ingest", str(tmp_path / "many"), "--no-wait", "--json").stdout)[
        "queued"
    ] == len(expected)
    worker = start_worker()  # type: ignore[operator]
    admin = create_engine(database.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    terminated = 0
    for threshold in (40, 120, 200):
        wait_for(lambda t=threshold: len(indexed(database)) >= t)  # type: ignore[misc]
        with admin.connect() as connection:
            terminated += len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                ).all()
            )
    admin.dispose()
    counts = settled(database, timeout=300)
    stop(worker)
    assert terminated >= 3  # the worker's connections really were cut, three times
    assert counts == {"indexed": 306}
    assert indexed(database) == expected
    assert json.loads(clipdex(env, "status", "--json").stdout)["points"] == 306
