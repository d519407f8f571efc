"""Distributed ingest: ``worker`` (a Celery worker) and ``reconcile`` (the outbox sweeper)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from clipdex.cli.common import JsonOption, fail, opened_runtime, print_json, warn

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from core.settings import Settings

STARTUP_CHECK_SECONDS = 600  # loading a large checkpoint from a slow disk
MAX_CONCURRENCY = 256
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise typer.BadParameter(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=MAX_CONCURRENCY, help="Pool processes (one per GPU).")
    ] = 1,
    gpus: Annotated[
        str | None,
        typer.Option(help="'all' or GPU ids (0,1): one pool child per GPU, each pinned to it."),
    ] = None,
    loglevel: Annotated[
        str, typer.Option(parser=_log_level, help=f"Celery log level: {', '.join(LOG_LEVELS)}.")
    ] = "INFO",
    fault_crash_on_sha256: Annotated[
        str | None,
        typer.Option(
            "--fault-crash-on-sha256",
            envvar="CLIPDEX_FAULT_CRASH_ON_SHA256",
            hidden=True,
            help="FAULT INJECTION, for tests only: a pool child SIGKILLs itself when the image "
            "with this SHA-256 is about to be encoded.",
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON start record on stdout, then JSON log lines on stderr (no banner).",
        ),
    ] = False,
) -> None:
    """Run a Celery worker that encodes batches from CLIPDEX_BROKER_URL (model loaded once per
    pool process, after fork).

    Before it consumes anything, the worker checks in a separate process that its runtime can
    start: the catalog, the live index in its store and the model. If not (the embedded store
    held by another process, a Qdrant server unreachable, weights missing) it exits with status
    2 and one line, leaving the queue untouched.

    Example: clipdex worker --concurrency 1 --json

    Fault injection for tests (off by default, honoured only by the task code):
    CLIPDEX_FAULT_CRASH_ON_SHA256=<sha256> makes a pool child kill itself with SIGKILL when that
    image is about to be encoded, as a segfault or the OOM killer would.
    """
    from clipdex.catalog import prepare_catalog
    from clipdex.cli.common import checked_settings, expected_errors
    from clipdex.errors import EXPECTED, message_of
    from core.catalog.db import make_engine
    from workers.app import QUEUE, broker_problem, make_celery
    from workers.tasks import a_child_gave_up, register_tasks

    with expected_errors():
        settings = checked_settings(json_output)
    if not settings.broker_url:
        fail("set CLIPDEX_BROKER_URL (e.g. redis://127.0.0.1:6379/0) for workers")
    if gpus is not None and not gpus.strip():
        fail("--gpus is empty: give 'all' or GPU ids such as 0,1")
    placed = _gpus(gpus) if gpus else []
    concurrency = len(placed) or concurrency
    if concurrency > 1 and not settings.qdrant_url:
        fail(
            f"{concurrency} pool processes cannot share the embedded vector store (one process "
            "at a time): run this worker with --concurrency 1, or set CLIPDEX_QDRANT_URL to a "
            "Qdrant server for more"
        )
    engine = make_engine(settings.catalog_url)
    try:  # in the parent, before any child forks: the catalog must be usable
        prepare_catalog(settings, engine, owner=False)
    except EXPECTED as error:
        fail(message_of(error))
    finally:
        engine.dispose()
    celery_app = make_celery(settings)
    unreachable = broker_problem(celery_app, settings.broker_url)  # not Celery's 100 retries
    if unreachable is not None:
        fail(f"worker cannot start: {unreachable}")
    problem = _check_runtime_starts(settings)
    if problem is not None:
        fail(f"worker cannot start: {problem}")
    register_tasks(celery_app, settings, crash_on_sha256=fault_crash_on_sha256, gpus=placed)
    top = _json_worker(concurrency) if json_output else []
    try:
        celery_app.worker_main(
            [*top, "worker", f"--concurrency={concurrency}", "--pool=prefork",
             f"--loglevel={loglevel}", "-Q", QUEUE, "--without-gossip",
             "--without-mingle"]
        )  # fmt: skip
    finally:
        if a_child_gave_up():  # it said why; the warm shutdown it asked for is a failure
            raise typer.Exit(2)


def _gpus(spec: str) -> list[int]:
    """The GPUs of ``--gpus``, counted in a spawned process: the parent touches no CUDA."""
    import multiprocessing

    from core.devices import GpuSpecError, cuda_device_count, parse_gpus

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        available = pool.apply(cuda_device_count)
    try:
        return parse_gpus(spec, available)
    except GpuSpecError as error:
        fail(str(error))


def _json_worker(concurrency: int) -> list[str]:
    """JSON log lines from Celery's own loggers, a start record; Celery's options for it."""
    from celery.signals import after_setup_logger, after_setup_task_logger

    from clipdex.jsonlog import start_record, use_json
    from workers.app import QUEUE

    after_setup_logger.connect(use_json, weak=False)
    after_setup_task_logger.connect(use_json, weak=False)
    start_record("worker", queue=QUEUE, concurrency=concurrency)
    return ["--quiet"]  # no banner on stdout


def _check_runtime_starts(settings: Settings) -> str | None:
    """Open the runtime, the live index and the model as a pool child will, in a spawned
    process: the parent keeps no torch or CUDA state and no open embedded store (its children
    are forked from it and open their own). Returns why it cannot start, or None."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_runtime_check, args=(settings, send), name="clipdex-worker-check"
    )
    process.start()
    send.close()
    try:
        if receive.poll(STARTUP_CHECK_SECONDS):
            problem: str | None = receive.recv()
            process.join(30)
            return problem
        if process.is_alive():
            process.kill()
            return f"the startup check took longer than {STARTUP_CHECK_SECONDS} s"
    except EOFError:
        pass  # it died before it answered
    finally:
        process.join(30)
        receive.close()
    return f"the startup check died (exit status {process.exitcode})"


def _runtime_check(settings: Settings, answer: Connection) -> None:
    """In the spawned check process: what ``worker_process_init`` does in each pool child."""
    from clipdex.errors import is_expected, message_of
    from core.runtime import open_runtime
    from workers.tasks import open_for_work

    problem: str | None = None
    try:
        runtime = open_runtime(settings)
        try:
            open_for_work(runtime)
        finally:
            runtime.close()
    except Exception as error:
        problem = message_of(error) if is_expected(error) else f"{type(error).__name__}: {error}"
    answer.send(" ".join(problem.split()) if problem is not None else None)
    answer.close()


def reconcile(
    older_than: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds; default CLIPDEX_RECONCILE_AFTER_SECONDS."),
    ] = None,
    every: Annotated[
        float | None,
        typer.Option(min=0.1, max=30 * 86400, help="Run periodically, every this many seconds."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Send again the work stuck in queued/processing (after a broken broker lost its queue),
    and the pending work nobody sent (a server killed inside its send window).

    Prints how many assets were requeued and how many of them the broker accepted; exits 1
    when some could not be sent (they stay queued in the catalog for the next round).

    Example: clipdex reconcile --older-than 0 --json  ->  {"requeued": 3, "sent": 3}"""
    import time
    from datetime import timedelta

    from ingest.queueing import reconcile as run_reconcile
    from workers.app import broker_problem, make_celery, sender

    with opened_runtime() as runtime:
        if not runtime.settings.broker_url:
            fail("set CLIPDEX_BROKER_URL: reconcile re-enqueues work for workers")
        settings = runtime.settings
        age = timedelta(
            seconds=older_than if older_than is not None else settings.reconcile_after_seconds
        )
        celery_app = make_celery(settings)
        send = sender(celery_app)
        version_id = runtime.live_version().id
        while True:
            problem = broker_problem(celery_app, settings.broker_url or "", tries=1)
            if problem is not None:  # checked even with nothing to send
                if every is None:
                    fail(problem)
                warn(f"{problem}; trying again in {every:g} s", json_output)
                time.sleep(every)
                continue
            done = run_reconcile(runtime.sessions, version_id, send, age, settings.task_batch_size)
            if json_output:
                print_json({"requeued": done.queued, "sent": done.sent})
            else:
                typer.echo(f"requeued {done.queued} assets, sent {done.sent} to the broker")
            if done.unsent:
                typer.echo(
                    f"clipdex: error: {done.unsent} of {done.queued} assets could not be sent "
                    "to the broker (CLIPDEX_BROKER_URL); they stay queued for the next round",
                    err=True,
                )
            if every is None:
                if done.unsent:
                    raise typer.Exit(1)
                return
            time.sleep(every)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(reconcile)
