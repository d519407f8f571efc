"""Checking the index against the catalog: ``verify`` finds drift and, with ``--repair``,
fixes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from clipdex.cli.common import JsonOption, opened_runtime, print_json, warn

if TYPE_CHECKING:
    from ingest.verify import RepairReport, VerifyReport

LABELS = {
    "missing_points": "indexed assets with no point",
    "orphan_points": "points with no indexed asset",
    "stale_payloads": "payloads that disagree with the catalog",
    "wrong_dimension": "vectors of the wrong dimension (sampled)",
    "stuck": "rows stuck in queued/processing",
    "missing_blobs": "upload blobs whose file is gone",
}


def verify(
    version: Annotated[
        int | None,
        typer.Option(help="Index version id to check (default: the live one)."),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fix what was found (re-encode missing points, delete orphans, rewrite "
            "payloads, re-queue stuck rows, mark lost blobs; set a damaged embedded "
            "collection aside and rebuild it from the catalog), then verify again.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Compare the catalog with the vector store: indexed assets with no point, points with no
    indexed asset, stale payloads, vector dimension, rows stuck past
    CLIPDEX_RECONCILE_AFTER_SECONDS, missing upload blobs. Prints counts and a sample of ids.

    Exit 0 when clean (after --repair: clean after repairing), 1 when drift is found, so cron
    can alert. With --repair, pending work goes to the workers when CLIPDEX_BROKER_URL is set,
    else it is encoded here.

    Example: clipdex verify --repair --json
    """
    from datetime import timedelta

    from clipdex.cli.evaluating import target_version
    from clipdex.dispatch import dispatch_for
    from core.diskspace import check_free_space, write_paths
    from core.store import CollectionDamaged
    from ingest.verify import Checks, Encoding
    from ingest.verify import repair as run_repair
    from ingest.verify import verify as run_verify

    with opened_runtime() as runtime:
        settings = runtime.settings
        target = target_version(runtime, version)  # checked against no configured model
        checks = Checks(timedelta(seconds=settings.reconcile_after_seconds), settings.blobs)
        rebuilt = False
        try:
            index = runtime.index_of(target)
            found = run_verify(runtime.sessions, index, target, checks)
        except CollectionDamaged:
            aside = runtime.set_aside(target) if repair else None
            if aside is None:
                raise  # one line: run --repair, or restore from a backup
            warn(
                f"set the damaged collection aside as {aside} (delete it once the rebuild is "
                "checked); rebuilding the collection from the catalog",
                json_output,
            )
            index, rebuilt = runtime.index_of(target), True
            found = run_verify(runtime.sessions, index, target, checks)
        fixed: RepairReport | None = None
        after: VerifyReport | None = None
        if repair and not found.clean:
            space = write_paths(settings.home, settings.blobs, settings.catalog_url)
            encoding = Encoding(
                runtime.encoder_for(target),  # loaded only if something must be encoded
                runtime.decode_limits(target),
                settings.batch_size,
                settings.decode_workers,
                before_write=lambda: check_free_space(space, settings.min_free_bytes),
            )
            send = dispatch_for(settings)
            fixed = run_repair(
                runtime.sessions, index, target, checks, encoding, send, settings.task_batch_size
            )
            if rebuilt and fixed.encoded:  # a rebuilt collection is all unindexed: a full scan
                from ingest.graph import build_search_graph

                build_search_graph(index)
            after = run_verify(runtime.sessions, index, target, checks)
    final = after or found
    if json_output:
        print_json(
            {
                "clean": final.clean,
                "found": found.as_dict(),
                "repair": fixed.as_dict() if fixed is not None else None,
                "after": after.as_dict() if after is not None else None,
            }
        )
    else:
        _print_report(found)
        if fixed is not None and after is not None:
            typer.echo("repaired: " + _repaired_line(fixed.as_dict()))
            typer.echo("verified again:")
            _print_report(after)
        if not final.clean:
            hint = "" if repair else ": run `clipdex verify --repair`"
            typer.echo(f"drift found{hint}")
    if not final.clean:
        raise typer.Exit(1)


def _print_report(report: VerifyReport) -> None:
    typer.echo(
        f"index version {report.version} ({report.collection}, {report.dim}-d): "
        f"{report.indexed} indexed, {report.points} points"
    )
    for kind, finding in report.findings.items():
        sample = f"  e.g. {', '.join(finding.sample)}" if finding.sample else ""
        typer.echo(f"  {finding.count:>8}  {LABELS[kind]}{sample}")
    if report.clean:
        typer.echo("clean")


def _repaired_line(counts: dict[str, Any]) -> str:
    shown = [f"{key.replace('_', ' ')} {value}" for key, value in counts.items() if value]
    return ", ".join(shown) or "nothing"


def register(app: typer.Typer) -> None:
    app.command()(verify)
