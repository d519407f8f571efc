"""Looking after it: ``status``, ``migrate``, ``optimize``."""

from __future__ import annotations

from typing import Any

import typer

from clipdex.cli.common import (
    JsonOption,
    checked_settings,
    expected_errors,
    opened_runtime,
    print_json,
    served_home,
)
from clipdex.display import shown


def migrate(json_output: JsonOption = False) -> None:
    """Bring the catalog schema to the newest revision (the compose one-shot service).

    Example: clipdex migrate --json  ->  {"revision": "0005", "at_head": true, "from": "0004"}
    """
    from core.catalog.db import make_engine
    from migrations.runner import current_revision, head_revision, upgrade_to_head

    with expected_errors():
        engine = make_engine(checked_settings().catalog_url)
        try:
            before = current_revision(engine)
            upgrade_to_head(engine)
        finally:
            engine.dispose()
    head = head_revision()
    if json_output:
        print_json({"revision": head, "at_head": True, "from": before})
        return
    if before == head:
        typer.echo(f"the catalog is at the newest revision ({head}): nothing to do")
    else:
        typer.echo(f"upgraded the catalog from {before or 'empty'} to the newest revision ({head})")


def optimize(json_output: JsonOption = False) -> None:
    """Build the embedded store's search graph now (a CLI ingest or reindex builds it at its
    end; a server never does, since a build pauses the whole process). Searches go from a full
    scan (~130 ms at 1M points) to about a millisecond. Stop `clipdex serve` first: the embedded
    store has one process at a time. A Qdrant server builds its own.

    Example: clipdex optimize --json  ->  {"points": 100000, "seconds": 183.2}
    """
    import time

    with opened_runtime() as runtime:
        _, index = runtime.existing_index()
        started = time.perf_counter()
        index.optimize()
        seconds, points = round(time.perf_counter() - started, 3), index.count()
    if json_output:
        print_json({"points": points, "seconds": seconds})
    else:
        typer.echo(f"optimized {points} points in {seconds:.1f}s")


def status(json_output: JsonOption = False) -> None:
    """Catalog counts by state, points in the live index, and the index's model identity.

    Example: clipdex status --json
    """
    from core.status import collect_status

    home = served_home()
    if home is not None:
        with expected_errors():
            report = home.status()
    else:
        with opened_runtime() as runtime:
            report = collect_status(runtime)
    from clipdex.cli.libraries import describe, libraries_now

    libraries = libraries_now()
    if json_output:
        print_json({**report, "libraries": [info.as_dict() for info in libraries]})
        return
    _print_status(report)
    for info in libraries:
        typer.echo(f"library:   {describe(info).strip()}")


def _print_status(report: dict[str, Any]) -> None:
    model = report["model"]
    typer.echo(f"home:      {shown(report['home'])}")
    if report.get("catalog"):  # a server older than this line does not send it
        typer.echo(f"catalog:   {shown(report['catalog'])}")
    typer.echo(f"store:     {shown(report['store'])}")
    typer.echo(f"model:     {shown(model['label']) if model else '(nothing ingested yet)'}")
    typer.echo(f"assets:    {report['assets']}  paths: {report['paths']}")
    typer.echo("states:    " + ", ".join(f"{k} {v}" for k, v in report["states"].items()))
    if report["points"] is None:
        typer.echo(f"points:    unavailable: {report['store_error']}")
    else:
        typer.echo(f"points:    {report['points']}")
    if report.get("graph_due"):
        typer.echo(
            f"search:    {report['graph_due']} vectors are searched by full scan until "
            "`clipdex optimize` (or the next CLI ingest) builds their graph"
        )
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
    if model is not None and report["points"] is not None and report["indexed"] != report["points"]:
        typer.echo(
            f"warning: the catalog has {report['indexed']} indexed assets but the index holds "
            f"{report['points']} points; the index has drifted from the catalog",
            err=True,
        )


def register(app: typer.Typer) -> None:
    for command in (status, migrate, optimize):
        app.command()(command)
