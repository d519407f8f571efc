"""A broker that cannot be reached, or a URL that is not one: ``clipdex ingest`` and
``clipdex worker`` stop with one line (the broker named without its password) instead of
waiting or retrying for ever, and work the broker refused stays queued in the catalog."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from clipdex.dispatch import dispatch_for
from core.catalog.models import AssetIndexState
from core.runtime import Runtime
from ingest.fetch import FetchPolicy
from ingest.manifest_ingest import ingest_manifest
from ingest.queueing import SendRefused
from ingest.run import ingest
from tests.conftest import closed_port, one_line_error, run_cli

pytestmark = pytest.mark.tiny_real


def clipdex(home: Path, *args: str, **extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = run_cli(home, *args, timeout=120, settings=extra)
    return done, time.monotonic() - started


@pytest.mark.corpus
@pytest.mark.parametrize("wait", ["--wait", "--no-wait"])
def test_ingest_with_an_unreachable_broker_stops_with_one_line(
    tmp_path: Path, library: Path, wait: str
) -> None:
    port = closed_port()
    broker = f"redis://:hunter2@127.0.0.1:{port}/0"
    done, seconds = clipdex(
        tmp_path / "home", "ingest", str(library), wait, CLIPDEX_BROKER_URL=broker
    )
    line = one_line_error(done)  # it used to wait for workers for ever
    assert seconds < 60
    assert (
        f"cannot reach the broker at redis://:***@127.0.0.1:{port}/0 (CLIPDEX_BROKER_URL)" in line
    )
    assert "hunter2" not in line and "Connection refused" in line


def test_reconcile_with_an_unreachable_broker_says_so_even_with_nothing_to_send(
    tmp_path: Path,
) -> None:
    """A reconcile sidecar with a mistyped URL looked healthy (``requeued 0``, exit 0)."""
    broker = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    done, _ = clipdex(tmp_path / "home", "reconcile", CLIPDEX_BROKER_URL=broker)
    line = one_line_error(done)
    assert "cannot reach the broker" in line and "hunter2" not in line


def test_a_worker_with_an_unreachable_broker_gives_up_at_once(tmp_path: Path) -> None:
    port = closed_port()
    done, seconds = clipdex(
        tmp_path / "home", "worker", CLIPDEX_BROKER_URL=f"redis://127.0.0.1:{port}/0"
    )
    line = one_line_error(done)  # Celery retried it a hundred times
    assert seconds < 60
    assert f"worker cannot start: cannot reach the broker at redis://127.0.0.1:{port}/0" in line


@pytest.mark.parametrize("url", ["bogus", "http://127.0.0.1:6379/0"])
def test_a_broker_url_celery_cannot_use_is_refused_by_the_settings(
    tmp_path: Path, url: str
) -> None:
    done, _ = clipdex(tmp_path / "home", "status", CLIPDEX_BROKER_URL=url)
    line = one_line_error(done)
    assert line.startswith("clipdex: error: CLIPDEX_BROKER_URL: ") and "redis://" in line


@pytest.mark.services
@pytest.mark.corpus
@pytest.mark.parametrize("source", ["folder", "manifest"])
def test_a_send_refused_during_an_ingest_ends_it_and_the_next_ingest_sends_the_work(
    runtime: Runtime, library: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str
) -> None:
    """The broker answered the command's first check, then refused the send. The work it
    refused goes back to pending: the next ``clipdex ingest`` sends it at once, without waiting
    the reconciler's age (or ``clipdex reconcile --older-than 0``)."""
    from kombu.exceptions import OperationalError

    import workers.app

    received: list[str] = []
    broker_up = False

    def sender(_app: object) -> object:
        def send(_version: int, ids: list[str]) -> None:
            if not broker_up:
                raise OperationalError(
                    "Error 111 connecting to 127.0.0.1:6379. Connection refused."
                )
            received.extend(ids)

        return send

    monkeypatch.setattr(workers.app, "sender", sender)
    settings = runtime.settings.model_copy(
        update={"broker_url": "redis://127.0.0.1:6379/14", "task_batch_size": 2}
    )
    manifest = tmp_path / "photos.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p in sorted(library.rglob("*.jpg"))))

    def run() -> None:
        send = dispatch_for(settings)
        assert send is not None
        if source == "folder":
            ingest(runtime, [library], dispatch=send)
        else:
            ingest_manifest(runtime, manifest, FetchPolicy.of(1, 1.0, False, []), dispatch=send)

    with pytest.raises(SendRefused) as refused:
        run()
    message = str(refused.value)
    assert message.startswith("cannot send work to the broker at redis://127.0.0.1:6379/14")

    def states() -> list[str]:
        with runtime.sessions() as session:
            return list(session.scalars(select(AssetIndexState.state)))

    pending = states()
    assert pending and set(pending) == {"pending"}
    assert f"{len(pending)} assets stay pending in the catalog" in message
    assert "running the command again sends them" in message
    assert "reconcile --older-than 0" in message
    broker_up = True
    run()
    assert len(received) == len(set(received)) == len(pending)
    assert set(states()) == {"queued"}


def test_no_broker_password_is_shown_in_any_form() -> None:
    """A failover list, a sentinel list and a password query parameter are masked too."""
    from workers.app import shown_broker

    cases = {
        "redis://:pw@a/0;redis://:pw2@b/0": "redis://:***@a/0;redis://:***@b/0",
        "sentinel://:pw@a:26379;sentinel://u:pw@b:26379": (
            "sentinel://:***@a:26379;sentinel://u:***@b:26379"
        ),
        "redis://a/0?password=sekret&db=1": "redis://a/0?password=***&db=1",
        "redis://h:6379/0": "redis://h:6379/0",
    }
    for url, shown in cases.items():
        assert shown_broker(url) == shown


@pytest.mark.corpus
def test_a_broker_that_refuses_the_resend_does_not_end_ingest_wait(
    runtime: Runtime,
    library: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``clipdex ingest --wait`` re-sends work the broker lost; a broker down at that moment
    (restarting, say) is tried again on a timer, and the wait goes on until the workers are
    done, each image sent once after the outage."""
    from datetime import timedelta

    from sqlalchemy import update

    import clipdex.cli.indexing as indexing
    from core.catalog.models import AssetState, utcnow

    first: list[str] = []
    ingest(runtime, [library], dispatch=lambda _version, ids: first.extend(ids))
    long_ago = utcnow() - timedelta(hours=1)  # the broker lost them: nothing moved for an hour
    with runtime.sessions() as session:
        session.execute(update(AssetIndexState).values(updated_at=long_ago))
        session.commit()
    runtime.settings = runtime.settings.model_copy(update={"reconcile_after_seconds": 1})
    monkeypatch.setattr(indexing, "BROKER_RETRY_SECONDS", 1.0)
    refusals, resent = 2, []

    def flaky(_version: int, ids: list[str]) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise SendRefused("cannot send work to the broker at redis://b:6379/0: refused")
        resent.extend(ids)
        with runtime.sessions() as session:  # a worker indexes them
            done = AssetIndexState.asset_id.in_(ids)
            session.execute(update(AssetIndexState).where(done).values(state=AssetState.INDEXED))
            session.commit()

    indexing.wait_for_workers(runtime, flaky, None)
    assert len(first) == 8 and sorted(resent) == sorted(first)
    err = capsys.readouterr().err
    assert err.count("warning: cannot send work to the broker at redis://b:6379/0: refused") == 2
    assert "still waiting for the workers" in err and "assets stay pending" not in err


def test_serve_with_an_unreachable_broker_warns_and_still_serves(tmp_path: Path) -> None:
    """Searches need no broker, so the server starts; but it says so at once, instead of a
    log line per upload later."""
    import httpx

    from tests.conftest import cli_env
    from tests.home_serve import serving

    home = tmp_path / "home"
    broker = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    env = cli_env(home, CLIPDEX_BROKER_URL=broker)
    log = tmp_path / "serve.log"
    with serving(home, env, log) as (_, server):
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    text = log.read_text()
    assert "clipdex: warning: cannot reach the broker at redis://:***@127.0.0.1:" in text
    assert "serving anyway" in text and "hunter2" not in text


@pytest.mark.corpus
def test_ingest_wait_asks_whether_a_worker_runs_when_nothing_is_taken(
    runtime: Runtime,
    library: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no worker, `ingest --wait` waited without a word (a bar that never moved)."""
    import threading

    from sqlalchemy import update

    import clipdex.cli.indexing as indexing
    from core.catalog.models import AssetState

    ingest(runtime, [library], dispatch=lambda _version, _ids: None)
    monkeypatch.setattr(indexing, "NO_WORKER_HINT_SECONDS", 1.5)

    def worker_starts_late() -> None:
        with runtime.sessions() as session:
            session.execute(update(AssetIndexState).values(state=AssetState.INDEXED))
            session.commit()

    late = threading.Timer(4.0, worker_starts_late)
    late.start()
    indexing.wait_for_workers(runtime, lambda _version, _ids: None, None)
    late.join()
    err = capsys.readouterr().err
    assert err.count("is a `clipdex worker` running on this broker?") == 1
