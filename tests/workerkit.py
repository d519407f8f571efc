"""Plumbing shared by the tests that run real workers: a Redis database of the test's own, the
``clipdex`` subprocess runner, worker processes, and the catalog's state counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.conftest import cli_env

OPEN_STATES = ("pending", "queued", "processing")


def redis_url(database: int) -> str:
    """Each test module empties its own Redis database, so they never share a queue."""
    return f"redis://127.0.0.1:6379/{database}"


def open_broker(url: str) -> Iterator[redis.Redis]:
    """An emptied Redis database for one test (the body of each module's ``broker`` fixture)."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not reachable at 127.0.0.1:6379 (start it; see README)")
    client.flushdb()
    yield client
    client.flushdb()


def worker_env(home: Path, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of the CLI and the workers: PostgreSQL, Redis, small batches."""
    settings = {"CLIPDEX_BATCH_SIZE": "4", "CLIPDEX_TASK_BATCH_SIZE": "4", **extra}
    return cli_env(
        home, CLIPDEX_DATABASE_URL=database_url, CLIPDEX_BROKER_URL=broker_url, **settings
    )


def clipdex(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args], env=env, capture_output=True, text=True,
        check=False, timeout=300,
    )  # fmt: skip


def query(database_url: str, sql: str, **params: object) -> list[Any]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = list(connection.execute(text(sql), params))
    engine.dispose()
    return rows


def states(database_url: str) -> dict[str, int]:
    """Asset rows by state, over every index version."""
    rows = query(database_url, "SELECT state, count(*) FROM asset_index_states GROUP BY state")
    return {state: count for state, count in rows}


def indexed(database_url: str, version_id: int | None = None) -> set[str]:
    sql = "SELECT asset_id FROM asset_index_states WHERE state = 'indexed'"
    if version_id is None:
        return {row[0] for row in query(database_url, sql)}
    sql += " AND index_version_id = :version"
    return {row[0] for row in query(database_url, sql, version=version_id)}


def settled(database_url: str, timeout: float = 180) -> dict[str, int]:
    """Wait until nothing is pending, queued or processing; the counts by state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = states(database_url)
        if not any(counts.get(s, 0) for s in OPEN_STATES):
            return counts
        time.sleep(0.5)
    raise AssertionError(f"workers did not finish: {states(database_url)}")


def wait_for(condition: Callable[[], object], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def spawn_worker(env: dict[str, str], log: Path, own_group: bool = True) -> subprocess.Popen[bytes]:
    """A ``clipdex worker`` with one pool child, logging to ``log``; in a process group of its
    own (``own_group``) so that a test can kill it whole, pool and all."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clipdex", "worker", "--concurrency", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=own_group,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM (warm shutdown) to a worker, its whole group when it has one; SIGKILL if it
    does not stop in time."""
    if process.poll() is not None:
        return
    grouped = os.getpgid(process.pid) == process.pid
    _signal(process, signal.SIGTERM, grouped)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal(process, signal.SIGKILL, grouped)
        process.wait()


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals, grouped: bool) -> None:
    if grouped:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)


class Workers:
    """Worker processes started by one test, stopped when it ends (the ``workers`` fixture)."""

    def __init__(self, logs: Path, own_group: bool = True) -> None:
        self.logs = logs
        self.own_group = own_group
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.started)}.log"
        process = spawn_worker(env, log, self.own_group)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            stop(process)
