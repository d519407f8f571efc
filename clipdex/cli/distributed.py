"""Distributed ingest: ``worker`` (a Celery worker) and ``reconcile`` (the outbox sweeper)."""

from __future__ import annotations

from typing import Annotated

import typer

from clipdex.cli.common import JsonOption, fail, opened_runtime, print_json


def worker(
    concurrency: Annotated[int, typer.Option(help="Pool processes (one per GPU).")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker that encodes batches from CLIPDEX_BROKER_URL (model loaded once per
    pool process, after fork)."""
    from clipdex.catalog import prepare_catalog
    from clipdex.errors import EXPECTED, message_of
    from core.catalog.db import make_engine
    from core.settings import load_settings
    from workers.app import QUEUE, make_celery
    from workers.tasks import register_tasks

    settings = load_settings()
    if not settings.broker_url:
        fail("set CLIPDEX_BROKER_URL (e.g. redis://127.0.0.1:6379/0) for workers")
    engine = make_engine(settings.catalog_url)
    try:  # in the parent, before any child forks: the catalog must be usable
        prepare_catalog(settings, engine, owner=False)
    except EXPECTED as error:
        fail(message_of(error))
    finally:
        engine.dispose()
    celery_app = make_celery(settings)
    register_tasks(celery_app, settings)
    celery_app.worker_main(
        ["worker", f"--concurrency={concurrency}", "--pool=prefork", f"--loglevel={loglevel}",
         "-Q", QUEUE, "--without-gossip", "--without-mingle"]
    )  # fmt: skip


def reconcile(
    older_than: Annotated[
        float | None, typer.Option(help="Seconds; default CLIPDEX_RECONCILE_AFTER_SECONDS.")
    ] = None,
    every: Annotated[
        float | None, typer.Option(help="Run periodically, every this many seconds.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Send again the work stuck in queued/processing (after a broker lost its queue)."""
    import time
    from datetime import timedelta

    from ingest.queueing import reconcile as run_reconcile
    from workers.app import make_celery, sender

    with opened_runtime() as runtime:
        if not runtime.settings.broker_url:
            fail("set CLIPDEX_BROKER_URL: reconcile re-enqueues work for workers")
        settings = runtime.settings
        age = timedelta(
            seconds=older_than if older_than is not None else settings.reconcile_after_seconds
        )
        send = sender(make_celery(settings))
        version_id = runtime.live_version().id
        while True:
            count = run_reconcile(runtime.sessions, version_id, send, age, settings.task_batch_size)
            if json_output:
                print_json({"requeued": count})
            else:
                typer.echo(f"requeued {count} assets")
            if every is None:
                return
            time.sleep(every)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(reconcile)
