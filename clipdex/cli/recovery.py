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

    With CLIPDEX_BROKER_URL they are sent to the workers at once, through the outbox. A broker
    that cannot be reached stops the command first, with nothing changed; one that refuses a
    send midway leaves the rest pending (exit 1; `clipdex reconcile --older-than 0` sends
    them). Without a broker nothing is encoded here: run `clipdex ingest PATH` (any of your
    roots), which encodes every pending asset.

    Example: clipdex retry --failed-before 2024-05-01T12:00:00Z --json
    """
    from clipdex.dispatch import dispatch_for
    from core.catalog.index_versions import active_index
    from ingest.queueing import SendRefused, queue_pending
    from ingest.retry import reset_failed

    before = _utc(failed_before) if failed_before is not None else None
    with opened_runtime() as runtime:
        with runtime.sessions() as session:
            if active_index(session) is None:  # never create an index (and load a model) here
                fail("nothing has been ingested yet: run `clipdex ingest PATH` first")
        send = dispatch_for(runtime.settings)  # the broker first: unreachable, nothing changes
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
        refused: str | None = None
        if send is not None and chosen.asset_ids:
            batch = runtime.settings.task_batch_size
            try:
                done = queue_pending(runtime.sessions, version_id, send, batch)
                report["queued"], report["sent"] = done.queued, done.sent
            except SendRefused as error:
                refused = str(error).split("; ")[0]
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
    if refused is not None:
        typer.echo(
            f"clipdex: error: {refused}; what was not sent is pending: once the broker is up, "
            "`clipdex reconcile --older-than 0` sends it",
            err=True,
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(retry)
