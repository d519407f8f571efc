"""Each pending row is sent once: concurrent producers (threads of one process, processes on
PostgreSQL) split the rows between them, and the reconciler picks up what a dead producer left
pending only once its deadline has passed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from clipdex.catalog import open_ready_runtime
from core.catalog.models import AssetIndexState, utcnow
from core.runtime import Runtime
from core.settings import load_settings
from ingest.queueing import by_primary_key, claim_statement, queue_pending, reconcile, state_in
from tests.conftest import REPO
from tests.fakes import FakeEncoder
from tests.sendkit import Recorder, seed_pending

ROWS = 600
BATCH = 16


def _claim_in_threads(
    sessions: sessionmaker[Session], version_id: int, send: Recorder, threads: int
) -> None:
    """Every thread calls queue_pending at the same moment, one whole-batches round, then one
    for the rest (the send window's two kinds of round)."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            start.wait()
            queue_pending(sessions, version_id, send, BATCH, whole_batches=True)
            queue_pending(sessions, version_id, send, BATCH)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    running = [threading.Thread(target=claim) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=120)
    assert not errors, errors


def _assert_sent_once(sent: list[str], seeded: list[str]) -> None:
    twice = [asset for asset, n in Counter(sent).items() if n > 1]
    assert not twice, f"{len(twice)} ids sent more than once"
    assert sorted(sent) == seeded


def _all_states(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as session:
        return set(session.scalars(select(AssetIndexState.state)))


@pytest.mark.unit
def test_concurrent_enqueues_on_sqlite_send_each_row_once(runtime: Runtime) -> None:
    version_id = runtime.live_version().id
    seeded = seed_pending(runtime.sessions, version_id, ROWS)
    send = Recorder()
    _claim_in_threads(runtime.sessions, version_id, send, threads=6)
    _assert_sent_once(send.ids, seeded)
    assert all(len(message) <= BATCH for message in send.messages)
    assert _all_states(runtime.sessions) == {"queued"}


@pytest.fixture
def pg_runtime(fresh_postgres: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = load_settings(
        home=tmp_path / "home", database_url=fresh_postgres, model="clipdex-tiny"
    )
    opened = open_ready_runtime(settings, encoder=FakeEncoder())
    yield opened
    opened.close()


# One producer process: three threads claiming at once, started when the test says go.
PRODUCER = """
import json, sys, threading, time
from pathlib import Path
from sqlalchemy import text
from core.catalog.db import make_engine, make_sessionmaker
from ingest.queueing import queue_pending
url, version, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
engine = make_engine(url)
with engine.connect() as connection:
    connection.execute(text("SELECT 1"))
sessions = make_sessionmaker(engine)
lock, sent = threading.Lock(), []
def send(_version, ids):
    with lock:
        sent.append(list(ids))
def claim():
    queue_pending(sessions, version, send, 16, whole_batches=True)
    queue_pending(sessions, version, send, 16)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
threads = [threading.Thread(target=claim) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(sent), flush=True)
"""


@pytest.mark.services
def test_concurrent_enqueues_on_postgres_send_each_row_once(
    pg_runtime: Runtime, fresh_postgres: str, tmp_path: Path
) -> None:
    """Threads of this process, then two processes of three threads each, over the same rows."""
    version_id = pg_runtime.live_version().id
    seeded = seed_pending(pg_runtime.sessions, version_id, ROWS)
    send = Recorder()
    _claim_in_threads(pg_runtime.sessions, version_id, send, threads=6)
    _assert_sent_once(send.ids, seeded)

    more = seed_pending(pg_runtime.sessions, version_id, ROWS)
    go = tmp_path / "go"
    args = [sys.executable, "-c", PRODUCER, fresh_postgres, str(version_id), str(go)]
    producers = [
        subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for producer in producers:
            assert producer.stdout is not None
            assert producer.stdout.readline().strip() == "ready", producer.stderr
        go.touch()
        outputs = [producer.communicate(timeout=120) for producer in producers]
    finally:
        for producer in producers:
            producer.kill()
    for producer, (_, err) in zip(producers, outputs, strict=True):
        assert producer.returncode == 0, err
    messages = [message for out, _ in outputs for message in json.loads(out)]
    _assert_sent_once([asset for message in messages for asset in message], more)
    assert _all_states(pg_runtime.sessions) == {"queued"}


@pytest.mark.unit
def test_reconcile_sends_pending_rows_only_past_the_deadline(runtime: Runtime) -> None:
    """A producer that died before sending (inside its send window) left rows pending: the
    reconciler sends them once they are older than its deadline, not before, and only once."""
    version_id = runtime.live_version().id
    hour_ago = utcnow() - timedelta(hours=1)
    abandoned = seed_pending(runtime.sessions, version_id, 5, updated_at=hour_ago)
    fresh = seed_pending(runtime.sessions, version_id, 3)
    seed_pending(runtime.sessions, version_id, 2, missing=True, updated_at=hour_ago)  # no path
    stuck = seed_pending(runtime.sessions, version_id, 4, updated_at=hour_ago)
    with runtime.sessions() as session:  # sent an hour ago, and the broker lost them
        session.execute(
            update(AssetIndexState)
            .where(AssetIndexState.asset_id.in_(stuck))
            .values(state="queued", updated_at=hour_ago)
        )
        session.commit()

    send = Recorder()
    early = reconcile(runtime.sessions, version_id, send, timedelta(hours=2), batch_size=BATCH)
    assert (early.queued, early.sent, send.ids) == (0, 0, [])

    done = reconcile(runtime.sessions, version_id, send, timedelta(minutes=15), batch_size=BATCH)
    assert (done.queued, done.sent) == (9, 9)
    assert sorted(send.ids) == sorted(abandoned + stuck)
    again = reconcile(runtime.sessions, version_id, send, timedelta(minutes=15), batch_size=BATCH)
    assert again.queued == 0  # what it sent is fresh again
    with runtime.sessions() as session:
        query = select(AssetIndexState.asset_id, AssetIndexState.state)
        states = {asset: state for asset, state in session.execute(query)}
    assert {states[asset] for asset in fresh} == {"pending"}  # the window's own, still inside


@pytest.mark.unit
def test_whole_batches_leave_the_rest_pending(runtime: Runtime) -> None:
    version_id = runtime.live_version().id
    seeded = seed_pending(runtime.sessions, version_id, 2 * BATCH + 5)
    send = Recorder()
    first = queue_pending(runtime.sessions, version_id, send, BATCH, whole_batches=True)
    assert (first.queued, [len(m) for m in send.messages]) == (2 * BATCH, [BATCH, BATCH])
    rest = queue_pending(runtime.sessions, version_id, send, BATCH)
    assert rest.queued == 5
    _assert_sent_once(send.ids, seeded)
    nothing = queue_pending(runtime.sessions, version_id, send, BATCH, whole_batches=True)
    assert nothing.queued == 0


def _claim_plan(runtime: Runtime, version_id: int, chunk: list[str]) -> str:
    statement = claim_statement(version_id, chunk, state_in("pending"))
    sql = str(statement.compile(runtime.engine, compile_kwargs={"literal_binds": True}))
    postgres = runtime.engine.dialect.name == "postgresql"
    with runtime.sessions() as session:
        by_primary_key(session)
        rows = session.execute(text(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + sql))
        plan = "\n".join(str(row) for row in rows)
        session.rollback()
    return plan


@pytest.mark.unit
def test_a_claim_finds_its_chunk_by_primary_key_on_a_fresh_sqlite_catalog(
    runtime: Runtime,
) -> None:
    """No statistics yet: the (version, state) index would read every row for each chunk."""
    version_id = runtime.live_version().id
    seeded = seed_pending(runtime.sessions, version_id, 2000)
    plan = _claim_plan(runtime, version_id, seeded[:500])
    assert "sqlite_autoindex_asset_index_states_1" in plan and "version_state" not in plan, plan


@pytest.mark.services
def test_a_claim_finds_its_chunk_by_primary_key_on_a_fresh_postgres_catalog(
    pg_runtime: Runtime,
) -> None:
    version_id = pg_runtime.live_version().id
    seeded = seed_pending(pg_runtime.sessions, version_id, 20_000)
    plan = _claim_plan(pg_runtime, version_id, seeded[:500])
    assert "pk_asset_index_states" in plan and "version_state" not in plan, plan
    assert "Seq Scan" not in plan, plan
