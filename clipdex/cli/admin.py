"""Running it: ``status``, ``serve``, ``worker``, ``reconcile``, ``migrate``, ``optimize``."""

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


def migrate() -> None:
    """Bring the catalog schema to the newest revision (the compose one-shot service)."""
    from core.catalog.db import make_engine
    from core.settings import load_settings
    from migrations.runner import upgrade_to_head

    engine = make_engine(load_settings().catalog_url)
    try:
        upgrade_to_head(engine)
    finally:
        engine.dispose()
    typer.echo("catalog is at the newest revision")


def optimize() -> None:
    """Build the embedded store's HNSW index: searches drop from a full scan (~16 ms at 100k
    points) to ~1 ms. It takes minutes at 100k points on a small CPU; a server builds its own."""
    import time

    with opened_runtime() as runtime:
        _, index = runtime.existing_index()
        started = time.perf_counter()
        index.optimize()
        typer.echo(f"optimized {index.count()} points in {time.perf_counter() - started:.1f}s")


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8700).")] = None,
) -> None:
    """Run the HTTP API and the results page (OpenAPI at /docs)."""
    import uvicorn

    from clipdex.http import create_app
    from core.settings import load_settings

    settings = load_settings()
    app_ = create_app(settings, preload=True)
    uvicorn.run(app_, host=host or settings.api_host, port=port or settings.api_port)


def status(json_output: JsonOption = False) -> None:
    """Catalog counts by state, points in the live index, and the index's model identity."""
    from core.status import collect_status

    with opened_runtime() as runtime:
        report = collect_status(runtime)
    if json_output:
        print_json(report)
        return
    model = report["model"]
    typer.echo(f"home:      {report['home']}")
    typer.echo(f"store:     {report['store']}")
    typer.echo(f"model:     {model['label'] if model else '(nothing ingested yet)'}")
    typer.echo(f"assets:    {report['assets']}  paths: {report['paths']}")
    typer.echo("states:    " + ", ".join(f"{k} {v}" for k, v in report["states"].items()))
    typer.echo(f"points:    {report['points']}")
    typer.echo(f"failures:  {report['failures']}")
    run = report["last_run"]
    if run is not None:
        counts = run["counts"]
        typer.echo(
            f"last run:  {run['status']} {run['started_at'][:19]}"
            + (
                f", {counts.get('scanned', 0)} scanned, {counts.get('encoded', 0)} encoded, "
                f"{counts.get('failed', 0)} failed in {run['seconds']:.1f}s"
                if run["seconds"] is not None
                else ""
            )
        )
    if report["unfinished_runs"]:
        typer.echo(
            f"note: {report['unfinished_runs']} ingest run(s) never finished "
            "(still running, or killed)",
            err=True,
        )
    if model is not None and report["indexed"] != report["points"]:
        typer.echo(
            f"warning: the catalog has {report['indexed']} indexed assets but the index holds "
            f"{report['points']} points; the index has drifted from the catalog",
            err=True,
        )


def register(app: typer.Typer) -> None:
    for command in (status, serve, worker, reconcile, migrate, optimize):
        app.command()(command)
