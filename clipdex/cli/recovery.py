"""Recovering from failures: ``retry`` puts dead-lettered assets back in the queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from clipdex.cli.common import JsonOption, fail, opened_runtime, print_json


def _utc(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--failed-before: not an ISO 8601 time: {text!r} (e.g. 2024-05-01T12:00:00+02:00)")
    if moment.tzinfo is not None:  # the catalog keeps naive UTC
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def retry(
    failed_before: Annotated[
        str | None,
        typer.Option(
            help="Only assets whose last failure is older than this ISO 8601 time "
            "(without an offset it is UTC)."
        ),
    ] = None,
    include_bad_files: Annotated[
        bool,
        typer.Option(
            "--include-bad-files",
            help="Also retry files that could not be read or decoded (usually the same answer).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Put dead-lettered assets of the live index back to work: state pending, attempts reset,
    their `clipdex failures` rows removed.

    With CLIPDEX_BROKER_URL they are sent to the workers at once (through the outbox; exit 1 if
    the broker refused some, which then stay queued for `clipdex reconcile`). Without a broker
    nothing is encoded here: run `clipdex ingest PATH` (any of your roots), which encodes every
    pending asset.

    Example: clipdex retry --failed-before 2024-05-01T12:00:00Z --json
    """
    from core.catalog.index_versions import active_index
    from ingest.queueing import queue_pending
    from ingest.retry import reset_failed

    before = _utc(failed_before) if failed_before is not None else None
    with opened_runtime() as runtime:
        with runtime.sessions() as session:
            if active_index(session) is None:  # never create an index (and load a model) here
                fail("nothing has been ingested yet: run `clipdex ingest PATH` first")
        version_id = runtime.live_version().id  # matched with CLIPDEX_MODEL by name, no model
        with runtime.sessions() as session:
            chosen = reset_failed(session, version_id, before, include_bad_files)
            session.commit()
        report: dict[str, int | None] = {
            "retried": len(chosen.asset_ids),
            "bad_files_left": chosen.bad_files_left,
            "queued": None,
            "sent": None,
        }
        unsent = 0
        broker = runtime.settings.broker_url
        if broker and chosen.asset_ids:
            from workers.app import make_celery, sender

            settings = runtime.settings
            send = sender(make_celery(settings))
            done = queue_pending(runtime.sessions, version_id, send, settings.task_batch_size)
            report["queued"], report["sent"], unsent = done.queued, done.sent, done.unsent
    if json_output:
        print_json(report)
    else:
        typer.echo(f"{report['retried']} dead-lettered assets set back to pending")
        if chosen.bad_files_left:
            typer.echo(f"{chosen.bad_files_left} bad files left failed (--include-bad-files)")
        if report["sent"] is not None:
            typer.echo(f"queued {report['queued']}, sent {report['sent']} to the workers")
        elif chosen.asset_ids:
            typer.echo("no CLIPDEX_BROKER_URL: run `clipdex ingest PATH` to encode them")
    if unsent:
        typer.echo(
            f"clipdex: error: {unsent} assets could not be sent to the broker "
            "(CLIPDEX_BROKER_URL); they stay queued for `clipdex reconcile`",
            err=True,
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(retry)
