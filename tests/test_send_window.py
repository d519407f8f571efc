"""The send window: single-image uploads close together become one task message, a full batch
goes at once, shutdown sends what waits, and rows a killed producer left pending are sent by
the reconciler once its deadline has passed."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.catalog.models import AssetIndexState
from core.runtime import Runtime
from core.settings import load_settings
from ingest.send_window import SendWindow
from tests.conftest import REPO, cli_env
from tests.fakes import FakeEncoder
from tests.sendkit import QUEUE, Recorder, queued_messages, seed_pending
from tests.workerkit import clipdex, open_broker, redis_url, wait_for

REDIS_URL = redis_url(10)  # its own: 7, 9, 11, 12, 13, 14 and 15 belong to other tests
LONG = 60.0  # a window no test waits out


def _pending(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        query = select(func.count()).where(AssetIndexState.state == "pending")
        return session.scalar(query) or 0


@pytest.mark.unit
def test_a_full_batch_goes_without_waiting_for_the_window(runtime: Runtime) -> None:
    version_id = runtime.live_version().id
    send = Recorder()
    window = SendWindow(runtime.sessions, send, batch_size=4, window_seconds=LONG)
    seeded = seed_pending(runtime.sessions, version_id, 6)
    window.poke(version_id, rows=6)
    try:
        wait_for(lambda: send.messages, timeout=30)
        assert [len(message) for message in send.messages] == [4]  # whole messages only
        assert _pending(runtime) == 2  # the rest waits for the window
    finally:
        window.stop()
    assert sorted(send.ids) == seeded and len(send.messages) == 2


@pytest.mark.unit
def test_the_window_sends_what_waits_on_shutdown(runtime: Runtime) -> None:
    version_id = runtime.live_version().id
    send = Recorder()
    window = SendWindow(runtime.sessions, send, batch_size=256, window_seconds=LONG)
    seeded = seed_pending(runtime.sessions, version_id, 3)
    for _ in seeded:
        window.poke(version_id)
    time.sleep(0.3)
    assert send.messages == []  # inside the window
    window.stop()
    assert send.messages == [seeded]
    assert _pending(runtime) == 0
    more = seed_pending(runtime.sessions, version_id, 2)  # a stopped window still works
    window.poke(version_id, rows=2)
    window.stop()
    assert send.messages == [seeded, more]


@pytest.mark.unit
def test_a_zero_window_sends_in_the_poking_thread(runtime: Runtime) -> None:
    version_id = runtime.live_version().id
    send = Recorder()
    window = SendWindow(runtime.sessions, send, batch_size=256, window_seconds=0)
    seeded = seed_pending(runtime.sessions, version_id, 2)
    window.poke(version_id)
    assert send.messages == [seeded]


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    yield from open_broker(REDIS_URL)


def _image(index: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (index * 20, 255 - index * 20, 90)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.services
@pytest.mark.parametrize(("window_ms", "messages"), [(2000, 1), (0, 10)])
def test_ten_single_uploads_close_together_make_one_task(
    fresh_postgres: str,
    broker: redis.Redis,
    tmp_path: Path,
    window_ms: int | None,
    messages: int,
) -> None:
    """Ten one-image uploads 0.3 s apart, with no worker running: one message naming all ten
    with a window (2 s here, not the 500 ms default, so that a slow request on a loaded machine
    cannot split them); with CLIPDEX_SEND_WINDOW_MS=0, one message per upload."""
    window = {} if window_ms is None else {"send_window_ms": window_ms}
    settings = load_settings(
        home=tmp_path / "home", database_url=fresh_postgres, broker_url=REDIS_URL,
        model="clipdex-tiny", **window,
    )  # fmt: skip
    runtime = open_ready_runtime(settings, encoder=FakeEncoder())
    try:
        with TestClient(create_app(settings, runtime)) as client:
            started, uploaded = time.monotonic(), []
            for index in range(10):  # each request starts 0.3 s after the one before
                time.sleep(max(0.0, started + 0.3 * index - time.monotonic()))
                files = {"files": (f"one-{index}.png", _image(index), "image/png")}
                answer = client.post("/v1/images", files=files)
                assert answer.status_code == 202, answer.text
                uploaded += answer.json()["assets"]
            wait_for(lambda: _pending(runtime) == 0, timeout=60)  # claimed while serving
            version_id = runtime.live_version().id
        sent = queued_messages(broker)  # the window's own messages: none was left to shutdown
    finally:
        runtime.close()
    assert len(sent) == messages and {version for version, _ in sent} == {version_id}
    ids = [asset for _, batch in sent for asset in batch]
    assert sorted(ids) == sorted(uploaded) and len(set(ids)) == 10


# A server process: the real app with a minute-long send window; one upload, then it waits to
# be killed, inside the window.
SERVER = """
import sys, time
from fastapi.testclient import TestClient
from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.settings import load_settings
settings = load_settings()
runtime = open_ready_runtime(settings)
client = TestClient(create_app(settings, runtime))
client.__enter__()
data = open(sys.argv[1], "rb").read()
answer = client.post("/v1/images", files={"files": ("up.png", data, "image/png")})
print(answer.status_code, answer.json()["assets"][0], flush=True)
time.sleep(600)
"""


@pytest.mark.services
def test_a_killed_servers_pending_upload_is_sent_by_reconcile_after_the_deadline(
    fresh_postgres: str, broker: redis.Redis, tmp_path: Path
) -> None:
    upload = tmp_path / "up.png"
    upload.write_bytes(_image(3))
    env = cli_env(
        tmp_path / "home", CLIPDEX_DATABASE_URL=fresh_postgres, CLIPDEX_BROKER_URL=REDIS_URL,
        CLIPDEX_SEND_WINDOW_MS="60000",
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(upload)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        status, asset_id = server.stdout.readline().split()
        assert status == "202", server.stderr
    finally:
        server.send_signal(signal.SIGKILL)  # dies inside its window: nothing was sent
        server.wait(timeout=30)
    assert broker.llen(QUEUE) == 0

    early = clipdex(env, "reconcile", "--json")  # the default deadline is 15 minutes
    assert early.returncode == 0, early.stderr
    assert json.loads(early.stdout) == {"requeued": 0, "sent": 0}
    assert broker.llen(QUEUE) == 0

    late = clipdex(env, "reconcile", "--older-than", "0", "--json")
    assert late.returncode == 0, late.stderr
    assert json.loads(late.stdout) == {"requeued": 1, "sent": 1}
    assert [batch for _, batch in queued_messages(broker)] == [[asset_id]]
