"""Measuring and taking out an index version: ``eval`` (labelled queries or ``--self-check``)
and ``export`` (Parquet / NPZ with the vectors)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clipdex.cli.common import JsonOption, fail, given_path, opened_runtime, print_json
from clipdex.display import shown

if TYPE_CHECKING:
    from core.catalog.models import IndexVersion
    from core.runtime import Runtime

VersionOption = Annotated[
    int | None, typer.Option("--version", help="Index version id (default: the live one).")
]


def target_version(runtime: Runtime, version: int | None) -> IndexVersion:
    """The version named, or the catalog's live one whatever CLIPDEX_MODEL says (reading and
    scoring it needs its own model, never the configured one); never creates an index."""
    from core.catalog.index_versions import active_index

    if version is not None:
        return runtime.version(version)
    with runtime.sessions() as session:
        live = active_index(session)
    if live is None:
        fail("nothing has been ingested yet: run `clipdex ingest PATH` first")
    return live


def evaluate(
    queries: Annotated[
        Path | None,
        typer.Argument(
            help='JSONL, one query a line: {"text": "...", "expected": [paths or asset ids]} '
            'or {"image": "path", "expected": [...]}; relative paths are from the file\'s folder.',
            show_default=False,
            parser=given_path,
        ),
    ] = None,
    self_check: Annotated[
        int | None,
        typer.Option(
            "--self-check",
            min=1,
            help="No labels: search N library images by a resized, JPEG-recompressed copy of "
            "themselves and report how often the original comes back first.",
        ),
    ] = None,
    version: VersionOption = None,
    json_output: JsonOption = False,
) -> None:
    """Retrieval quality of an index version: recall@1/5/10, MRR@10 and nDCG@10 over labelled
    queries, or recall@1 and MRR@10 of the label-free --self-check (MRR@10: a query whose
    first expected asset is not in the top 10 counts 0).

    recall@k counts a query as found when any expected asset is in the first k results.
    Expected entries the catalog does not know are reported; a query with none known is left
    out.

    Example: clipdex eval queries.jsonl --json
    Example: clipdex eval --self-check 200
    """
    from search.evaluate import QueryFileError, load_queries
    from search.evaluate import evaluate as run_evaluate
    from search.evaluate import self_check as run_self_check

    if (queries is None) == (self_check is None):
        fail("give a QUERIES.jsonl file or --self-check N (one of the two)")
    loaded = []
    if queries is not None:
        try:
            loaded = load_queries(queries)
        except QueryFileError as error:
            fail(str(error))
        except OSError as error:
            fail(f"cannot read {queries}: {error.strerror or error}")
    with opened_runtime() as runtime:
        target = target_version(runtime, version)
        if self_check is not None:
            checked = run_self_check(runtime, target, self_check)
            if checked.samples == 0:  # before any figure: there are none
                fail(
                    f"no readable indexed image to check in index version {target.id}"
                    + (f" ({checked.unreadable} unreadable)" if checked.unreadable else "")
                )
            if json_output:
                print_json(checked.as_dict())
            else:
                typer.echo(
                    f"index version {checked.version}: self-check on {checked.samples} images "
                    f"(resized 0.75x, JPEG quality 60)"
                )
                typer.echo(f"  recall@1  {checked.recall_at_1:.4f}")
                typer.echo(f"  MRR@10    {checked.mrr:.4f}")
                if checked.unreadable:
                    typer.echo(f"  {checked.unreadable} unreadable file(s) skipped")
            return
        try:
            report = run_evaluate(runtime, target, loaded)
        except QueryFileError as error:
            fail(str(error))
    if json_output:
        print_json(report.as_dict())
    else:
        typer.echo(f"index version {report.version}: {report.queries} queries")
        for label, value in (
            ("recall@1", report.recall_at_1),
            ("recall@5", report.recall_at_5),
            ("recall@10", report.recall_at_10),
            ("MRR@10", report.mrr),
            ("nDCG@10", report.ndcg_at_10),
        ):
            typer.echo(f"  {label:<10}{value:.4f}")
        if report.unknown:
            typer.echo(f"{len(report.unknown)} expected entries are not in the catalog:", err=True)
            for entry in report.unknown[:20]:
                typer.echo(f"  {shown(entry)}", err=True)
        if report.skipped:
            typer.echo(f"{report.skipped} queries left out (no known expected asset)", err=True)
    if report.queries == 0:
        fail("no query has a known expected asset")


def export(
    out: Annotated[
        Path,
        typer.Argument(
            help="Output file: .parquet or .npz.", show_default=False, parser=given_path
        ),
    ],
    version: VersionOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write every indexed asset of an index version: id, sha256, paths, metadata (format,
    width, height, taken_at) and its vector, with the model identity and the version in the
    file's metadata. Streams in chunks; the file appears only when complete.

    Example: clipdex export vectors.parquet --version 2
    """
    from search.export import ExportRefused
    from search.export import export as run_export

    with opened_runtime() as runtime:
        target = target_version(runtime, version)
        try:
            report = run_export(runtime, target, out)
        except ExportRefused as error:
            fail(str(error))
    if json_output:
        print_json(report.as_dict())
    else:
        typer.echo(
            f"exported {report.rows} assets of index version {report.version} to "
            f"{shown(report.path)}"
        )
        if report.missing_points:
            typer.echo(
                f"{report.missing_points} indexed assets have no point and were left out: "
                "run `clipdex verify --repair`",
                err=True,
            )


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
    app.command()(export)
