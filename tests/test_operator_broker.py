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
