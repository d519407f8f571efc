"""Putting images in: ``ingest`` (inline or through workers), ``failures`` and ``jobs``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clipdex.cli.common import (
    JsonOption,
    expected_errors,
    given_path,
    opened_runtime,
    print_json,
    served_home,
)
from clipdex.display import shown

if TYPE_CHECKING:
    from clipdex.progress import TerminalProgress
    from core.runtime import Runtime
    from ingest.queueing import SendBatch
    from ingest.run import IngestReport

OPEN_STATES = ("pending", "queued", "processing")
NO_WORKER_HINT_SECONDS = 60.0  # `ingest --wait`: when to ask whether any worker runs
BROKER_RETRY_SECONDS = 30.0  # `ingest --wait`: how often a refused re-send is tried again


def ingest(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Folders or files to ingest; none: rescan every library.", parser=given_path
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="With CLIPDEX_BROKER_URL: wait until workers are done.")
    ] = True,
    json_output: JsonOption = False,
    manifest: Annotated[
        bool, typer.Option("--manifest", help="PATHS are manifests (else known by content).")
    ] = False,
) -> None:
    """Scan folders, encode new images, and bring the index in line with what is on disk.

    With CLIPDEX_BROKER_URL set, the work is registered in the catalog and sent to workers
    (`clipdex worker`) in batches; the command shows progress until they are done.

    Example: clipdex ingest ~/Pictures --json"""
    paths = paths or []  # no folder: every library (`clipdex library add`)
    from ingest.manifest import is_manifest

    if manifest or any(is_manifest(path) for path in paths):  # CSV / JSONL of paths and URLs
        from clipdex.cli.manifests import ingest_manifests

        return ingest_manifests(paths, wait, json_output)
    from clipdex.dispatch import dispatch_for
    from clipdex.progress import TerminalProgress, wants_bar
    from ingest.run import IngestReport
    from ingest.run import ingest as run_ingest

    home = served_home()
    if home is not None:  # `clipdex serve` owns this embedded home: it does the work
        with expected_errors():
            if wants_bar(json_output):
                with TerminalProgress() as bar:
                    done = home.ingest(paths, bar)
            else:
                done = home.ingest(paths, None)
        _print_ingest(IngestReport(**done), None, json_output)
        return
    with opened_runtime() as runtime:
        dispatch = dispatch_for(runtime.settings)
        waits = dispatch is not None and wait
        if wants_bar(json_output):
            with TerminalProgress() as bar:
                report = run_ingest(runtime, paths, bar, dispatch, build_index=True)
                if dispatch is not None and waits:
                    wait_for_workers(runtime, dispatch, bar)
        else:
            report = run_ingest(runtime, paths, dispatch=dispatch, build_index=True)
            if dispatch is not None and waits:
                wait_for_workers(runtime, dispatch, None)
        settled = open_counts(runtime) if waits else None
    _print_ingest(report, settled, json_output)


def _print_ingest(report: IngestReport, settled: dict[str, int] | None, json_output: bool) -> None:
    if json_output:
        # With workers, the catalog's counts once they are done (`encoded` counts inline work).
        print_json({**report.as_dict(), **({"states": settled} if settled else {})})
        return
    typer.echo(
        f"{report.scanned} scanned: {report.new} new, {report.modified} modified, "
        f"{report.unchanged} unchanged, {report.moved} moved, {report.duplicates} duplicates; "
        f"{report.encoded} encoded, {report.reused} reused, {report.failed} failed, "
        f"{report.removed} removed in {report.seconds:.1f}s  [{shown(report.model)}]; "
        f"{report.ignored} ignored (not images: videos, RAW, other), {report.skipped} skipped "
        f"(links, special files), {report.excluded} excluded (hidden, system, excludes)"
    )
    if report.queued:  # with workers, `encoded` above counts this process's own work only
        typer.echo(f"{report.queued} sent to the workers")
    if settled:
        counts = ", ".join(f"{state} {count}" for state, count in settled.items())
        typer.echo(f"after the workers, the catalog holds: {counts}")
    for root in report.missing_roots:
        typer.echo(
            f"warning: library root {shown(root)} is missing (not mounted?): its paths are "
            "kept; `clipdex library remove` it if it is gone for good",
            err=True,
        )
    if report.failed:
        typer.echo("see `clipdex failures` for the reasons", err=True)


def open_counts(runtime: Runtime) -> dict[str, int]:
    from core.status import state_counts

    with runtime.sessions() as session:
        return state_counts(session)


def wait_for_workers(runtime: Runtime, dispatch: SendBatch, bar: TerminalProgress | None) -> None:
    """Poll the catalog until nothing is pending, queued or processing; when progress stalls
    past the reconcile deadline, send the stuck work again (the broker may have lost it). A
    broker that refuses that send does not end the wait: the refused rows are back to pending,
    and they are sent again every ``BROKER_RETRY_SECONDS`` until the broker takes them."""
    import time
    from datetime import timedelta

    from ingest.queueing import SendRefused, queue_pending, reconcile

    settings = runtime.settings
    version_id = runtime.live_version().id
    first = open_counts(runtime)
    left = sum(first[state] for state in OPEN_STATES)
    if bar is not None:
        bar.phase("workers", left)
    last_progress = started = time.monotonic()
    refused_at: float | None = None  # the broker refused the last send: retry on a timer
    hinted = False
    while left:
        time.sleep(1.0)
        counts = open_counts(runtime)
        now_left = sum(counts[state] for state in OPEN_STATES)
        if bar is not None and now_left < left:
            bar.advance(left - now_left)
        now = time.monotonic()
        if now_left < left:
            last_progress = now
        elif (
            not hinted
            and last_progress == started
            and now - started > NO_WORKER_HINT_SECONDS
            and not counts["processing"]
        ):
            hinted = True  # nothing taken since the start: likely no worker at all
            typer.echo(
                f"warning: no worker has taken any of this work in {NO_WORKER_HINT_SECONDS:.0f} "
                "s: is a `clipdex worker` running on this broker? (still waiting; Ctrl-C stops "
                "waiting, and the catalog keeps the work)",
                err=True,
            )
        try:
            if refused_at is not None:
                if now - refused_at >= BROKER_RETRY_SECONDS:
                    queue_pending(runtime.sessions, version_id, dispatch, settings.task_batch_size)
                    refused_at, last_progress = None, now
            elif now - last_progress > settings.reconcile_after_seconds:
                age = timedelta(seconds=settings.reconcile_after_seconds)
                reconcile(runtime.sessions, version_id, dispatch, age, settings.task_batch_size)
                last_progress = now
        except SendRefused as error:
            refused_at = now
            typer.echo(
                f"warning: {str(error).split('; ')[0]}; still waiting for the workers, and "
                f"sending the stuck work again in {BROKER_RETRY_SECONDS:.0f} s "
                "(Ctrl-C stops waiting; the catalog keeps the work)",
                err=True,
            )
        left = now_left


def failures(json_output: JsonOption = False) -> None:
    """List every file that could not be indexed, with the stage and the reason.

    Example: clipdex failures --json
    """
    from ingest.failures import failure_rows

    home = served_home()
    if home is not None:
        with expected_errors():
            listed = home.failures()
    else:
        with opened_runtime() as runtime, runtime.sessions() as session:
            listed = failure_rows(session)
    if json_output:
        print_json(listed)
        return
    for row in listed:
        typer.echo(f"{shown(row['path'])}\t{shown(row['stage'])}\t{shown(row['reason'])}")
    typer.echo(f"{len(listed)} failed", err=True)
    from clipdex.cli.libraries import describe, libraries_now

    for info in libraries_now():
        typer.echo(f"library: {describe(info).strip()}", err=True)


def jobs(
    job_id: Annotated[str | None, typer.Argument(help="One job; default: the recent ones.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Progress of upload jobs: counts by state and failures with reasons.

    Example: clipdex jobs 3f2b9c4e-1d2a-4c5b-8e7f-0a1b2c3d4e5f --json
    """
    from ingest.uploads import job_status, recent_jobs

    with opened_runtime() as runtime:
        found = [job_status(runtime, job_id)] if job_id else recent_jobs(runtime)
    rows: list[dict[str, Any]] = [
        {
            "id": j.id, "kind": j.kind, "created_at": j.created_at.isoformat(), "total": j.total,
            "done": j.done, "states": j.states, "failures": j.failures,
        }
        for j in found
    ]  # fmt: skip
    if json_output:
        print_json(rows[0] if job_id else rows)
        return
    for row in rows:
        states = ", ".join(f"{k} {v}" for k, v in row["states"].items() if v)
        typer.echo(f"{shown(row['id'])}  {shown(row['kind']):<6} {row['total']:>5} files  {states}")
        for failure in row["failures"]:
            typer.echo(f"    {shown(failure['filename'])}: {shown(failure['reason'])}")


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(failures)
    app.command()(jobs)
