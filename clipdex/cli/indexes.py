"""Operating index versions: ``index list|activate|drop`` and ``reindex``.

The embedded store admits one process: a reindex runs in this CLI process, so on an embedded
home ``clipdex serve`` must be stopped meanwhile (or use a Qdrant server, CLIPDEX_QDRANT_URL,
where a running server follows the swap by itself)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clipdex.cli.common import (
    JsonOption,
    expected_errors,
    fail,
    given_path,
    opened_runtime,
    print_json,
    served_home,
)
from clipdex.display import shown

if TYPE_CHECKING:
    from core.runtime import Runtime
    from core.settings import Settings
    from ingest.queueing import SendBatch
    from ingest.reindex import Workers

index_app = typer.Typer(
    help="Index versions: list, activate (or roll back), drop.\n\n"
    "Example: clipdex index list --json"
)


def version_rows(runtime: Runtime) -> list[dict[str, Any]]:
    """Every version with its model, state, counts by asset state and points stored."""
    from sqlalchemy import func, select

    from core.catalog.index_versions import all_versions
    from core.catalog.models import AssetIndexState

    with runtime.sessions() as session:
        versions = all_versions(session)
        counted = session.execute(
            select(AssetIndexState.index_version_id, AssetIndexState.state, func.count())
            .group_by(AssetIndexState.index_version_id, AssetIndexState.state)
        ).all()  # fmt: skip
    counts: dict[int, dict[str, int]] = {}
    for version_id, state, count in counted:
        counts.setdefault(version_id, {})[state] = int(count)
    return [
        {
            "id": v.id, "collection": v.collection, "architecture": v.architecture,
            "pretrained": v.pretrained, "dim": v.dim, "state": v.state,
            "created_at": v.created_at.isoformat(), "assets": counts.get(v.id, {}),
            "points": runtime.index_of(v).count(),
        }
        for v in versions
    ]  # fmt: skip


@index_app.command("list")
def list_versions(json_output: JsonOption = False) -> None:
    """Every index version: id, collection, model, state, assets by state, points.

    Example: clipdex index list --json"""
    with opened_runtime() as runtime:
        rows = version_rows(runtime)
    if json_output:
        print_json(rows)
        return
    for row in rows:
        states = ", ".join(f"{k} {v}" for k, v in sorted(row["assets"].items()))
        typer.echo(
            f"{row['id']:>3}  {row['state']:<8} {shown(row['architecture'])} "
            f"({shown(row['pretrained'])}, {row['dim']}-d)  {shown(row['collection'])}  "
            f"points {row['points']}  [{states}]"
        )


@index_app.command("activate")
def activate(
    version: Annotated[int, typer.Argument(help="The index version id to make live.")],
    json_output: JsonOption = False,
) -> None:
    """Make a ready or retired version live (the same command rolls back).

    Example: clipdex index activate 1"""
    from core.catalog.index_versions import VersionRefused
    from ingest.activation import activate_synced

    home = served_home()
    if home is not None:  # `clipdex serve` owns this embedded home: it activates and follows
        with expected_errors():
            result = home.activate(version)
    else:
        with opened_runtime() as runtime:
            try:
                new, old = activate_synced(runtime, version)
            except VersionRefused as error:
                fail(str(error))
        result = {"live": new.id, "collection": new.collection, "retired": old.id if old else None}
    if json_output:
        print_json(result)
        return
    typer.echo(f"index version {result['live']} is live ({shown(result['collection'])})")


@index_app.command("drop")
def drop(
    version: Annotated[int, typer.Argument(help="A non-live index version id.")],
    json_output: JsonOption = False,
) -> None:
    """Delete a non-live version, its per-asset states and its collection.

    Example: clipdex index drop 2"""
    from core.catalog.index_versions import VersionRefused
    from core.runtime import UnknownIndexVersion

    with opened_runtime() as runtime:
        try:
            dropped = runtime.drop(version)
        except (VersionRefused, UnknownIndexVersion) as error:
            fail(str(error))
    if json_output:
        print_json({"dropped": dropped.id, "collection": dropped.collection})
        return
    typer.echo(f"index version {dropped.id} dropped ({shown(dropped.collection)})")


def reindex(
    model: Annotated[str, typer.Option(help="open_clip model name for the new index.")],
    pretrained: Annotated[
        str | None, typer.Option(help="Pretrained tag or checkpoint path (default: openai).")
    ] = None,
    swap: Annotated[bool, typer.Option(help="Make the new version live when it is done.")] = True,
    gate: Annotated[
        Path | None,
        typer.Option(
            help="Queries (JSONL, as for `clipdex eval`) both versions are scored on before the "
            "swap; a worse new version stays ready and the command exits 1.",
            parser=given_path,
        ),
    ] = None,
    max_drop: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="With --gate: the largest drop of nDCG@10 or recall@10 allowed."
        ),
    ] = 0.02,
    json_output: JsonOption = False,
) -> None:
    """Build a new index version with another model from the catalog, then swap it in.

    Resumable: run the same command again after an interruption. On an embedded home that
    `clipdex serve` owns, the reindex runs inside the server (this command asks it and shows
    its progress; interrupting this command leaves it running there). With --gate the swap
    happens only if the new version scores no worse than the live one
    (by more than --max-drop) on the given queries. With CLIPDEX_BROKER_URL the encoding
    goes to the workers, each task naming the new version (the workers and this command share
    a Qdrant server, CLIPDEX_QDRANT_URL).

    Example: clipdex reindex --model ViT-B-32 --pretrained openai --json"""
    from clipdex.dispatch import dispatch_for
    from clipdex.progress import TerminalProgress, wants_bar
    from clipdex.reindexing import gate_version, reindex_plan
    from core.catalog.index_versions import VersionRefused
    from core.model_names import model_problem
    from ingest.reindex import ReindexRefused
    from ingest.reindex import reindex as run_reindex
    from search.evaluate import load_queries

    if not math.isfinite(max_drop):
        fail(f"--max-drop must be a number between 0 and 1, got {max_drop}")
    problem = model_problem(model, pretrained)  # a misspelt model or tag: before anything
    if problem is not None:
        fail(problem)
    home = served_home()
    if home is not None:  # `clipdex serve` owns this embedded home: the reindex runs in it
        order = {"model": model, "pretrained": pretrained, "swap": swap, "max_drop": max_drop,
                 "gate": str(gate.absolute()) if gate else None}  # fmt: skip
        try:
            outcome = home.reindex(order, json_output)
        except KeyboardInterrupt:
            typer.echo(
                "clipdex: the reindex goes on in the server; run the same command again to "
                "follow it to the end",
                err=True,
            )
            raise typer.Exit(130) from None
        _print_outcome(*outcome, json_output)
        return
    queries = None
    if gate is not None:
        try:
            queries = load_queries(gate)
        except (OSError, ValueError) as error:
            fail(str(error))
    gated: dict[str, Any] | None = None
    with opened_runtime() as runtime:
        settings = runtime.settings
        workers = _workers(dispatch_for(settings), settings)
        plan = reindex_plan(
            settings, model, pretrained, swap and queries is None, workers, build_index=True
        )
        _ = runtime.store  # take the embedded store's lock before any work
        try:
            if wants_bar(json_output):
                with TerminalProgress() as bar:
                    report = run_reindex(runtime, plan, bar)
            else:
                report = run_reindex(runtime, plan)
        except (ReindexRefused, VersionRefused) as error:
            fail(str(error))
        if queries is not None and report.state == "ready":
            gated = gate_version(runtime, report.version, queries, max_drop, swap)
            report.state, report.swapped = gated["state"], gated["swapped"]
    _print_outcome(report, gated, json_output)


def _print_outcome(report: Any, gated: dict[str, Any] | None, json_output: bool) -> None:
    if json_output:
        print_json({**report.as_dict(), **({"gate": gated} if gated else {})})
    else:
        _print_report(report, gated)
    if gated is not None and not gated["passed"]:
        raise typer.Exit(1)


def _workers(send: SendBatch | None, settings: Settings) -> Workers | None:
    """With CLIPDEX_BROKER_URL the encoding goes to workers through the outbox."""
    from ingest.reindex import Workers

    if send is None:
        return None
    return Workers(send, settings.task_batch_size, float(settings.reconcile_after_seconds))


def _print_report(report: Any, gated: dict[str, Any] | None) -> None:
    if gated is not None:
        for name in ("new", "live"):
            scores = gated[name]
            typer.echo(
                f"gate {name:>4} (version {scores['version']}): nDCG@10 {scores['ndcg@10']:.3f}, "
                f"recall@10 {scores['recall@10']:.3f}, MRR {scores['mrr']:.3f} "
                f"over {scores['queries']} queries"
            )
        if not gated["passed"]:
            typer.echo(
                f"clipdex: gate refused the swap: the new version is worse by more than "
                f"{gated['max_drop']} (it stays ready; `clipdex index activate "
                f"{report.version}` swaps anyway)",
                err=True,
            )
    typer.echo(
        f"index version {report.version} ({shown(report.model)}): {report.indexed} indexed, "
        f"{report.points} points; {report.encoded} encoded, {report.reused} reused, "
        f"{report.failed} failed, {report.removed} removed in {report.seconds:.1f}s; "
        f"state {report.state}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command()(reindex)
