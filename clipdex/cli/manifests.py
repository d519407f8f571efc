"""``clipdex ingest MANIFEST...``: the manifest side of the ``ingest`` command (the command
itself lives in :mod:`clipdex.cli.indexing` and hands manifests over here)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from clipdex.cli.common import fail, opened_runtime, print_json, served_home
from clipdex.display import shown

if TYPE_CHECKING:
    from core.settings import Settings
    from ingest.fetch import FetchPolicy
    from ingest.manifest_ingest import ManifestReport


def fetch_policy(settings: Settings) -> FetchPolicy:
    from ingest.fetch import FetchPolicy

    return FetchPolicy.of(
        settings.url_max_bytes, settings.url_timeout_seconds, settings.url_allow_private,
        settings.url_allow_networks,
    )  # fmt: skip


def ingest_manifests(paths: list[Path], wait: bool, json_output: bool) -> None:
    """Ingest each manifest in turn (inline, or through the workers with CLIPDEX_BROKER_URL)."""
    from clipdex.cli.indexing import open_counts, wait_for_workers
    from clipdex.dispatch import dispatch_for
    from clipdex.progress import TerminalProgress, wants_bar
    from ingest.manifest import is_manifest
    from ingest.manifest_ingest import ingest_manifest

    others = [path for path in paths if not is_manifest(path)]
    if not paths or others:
        fail(
            f"{shown(str(others[0])) if others else 'nothing'} is not a manifest (a CSV file with "
            "a 'path' or 'url' column, or JSON lines); ingest folders and manifests separately"
        )
    if served_home() is not None:
        fail(
            "`clipdex serve` owns this embedded home and manifests do not go through it yet: "
            "stop it to ingest a manifest, or send the images with POST /v1/images"
        )
    reports: list[ManifestReport] = []
    with opened_runtime() as runtime:
        dispatch = dispatch_for(runtime.settings)
        policy = fetch_policy(runtime.settings)
        bar = TerminalProgress() if wants_bar(json_output) else None
        with bar if bar is not None else nullcontext():
            for path in paths:
                reports.append(ingest_manifest(runtime, path, policy, bar, dispatch))
            if dispatch is None and any(report.encoded for report in reports):
                from ingest.graph import build_search_graph

                build_search_graph(runtime.existing_index()[1], bar)
            if dispatch is not None and wait:
                wait_for_workers(runtime, dispatch, bar)
        settled = open_counts(runtime) if dispatch is not None and wait else None
    if json_output:
        shown_reports = [r.as_dict() for r in reports]
        print_json({"manifests": shown_reports, **({"states": settled} if settled else {})})
        return
    for report in reports:
        _print(report)


def _print(report: ManifestReport) -> None:
    typer.echo(
        f"{shown(report.manifest)}: {report.rows} rows ({report.files} files, {report.urls} "
        f"URLs): {report.new} new, {report.unchanged} unchanged, {report.duplicates} "
        f"duplicates, {report.tagged} given metadata; {report.encoded} encoded, "
        f"{report.queued} sent to workers, {report.failed} failed, {report.removed} removed in "
        f"{report.seconds:.1f}s"
    )
    for row in report.bad_rows:
        typer.echo(f"  line {row['line']}: {shown(str(row['reason']))}", err=True)
    if report.failed:
        typer.echo("see `clipdex failures` for the reasons", err=True)
