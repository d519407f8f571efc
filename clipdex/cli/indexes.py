"""Operating index versions: ``index list|activate|drop`` and ``reindex``.

The embedded store admits one process: a reindex runs in this CLI process, so on an embedded
home ``clipdex serve`` must be stopped meanwhile (or use a Qdrant server, CLIPDEX_QDRANT_URL,
where a running server follows the swap by itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from clipdex.cli.common import JsonOption, fail, opened_runtime, print_json
from clipdex.display import shown

if TYPE_CHECKING:
    from core.runtime import Runtime

index_app = typer.Typer(help="Index versions: list, activate (or roll back), drop.")


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

    with opened_runtime() as runtime:
        try:
            new, old = runtime.activate(version)
        except VersionRefused as error:
            fail(str(error))
    result = {"live": new.id, "collection": new.collection, "retired": old.id if old else None}
    if json_output:
        print_json(result)
        return
    typer.echo(f"index version {new.id} is live ({shown(new.collection)})")


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
    json_output: JsonOption = False,
) -> None:
    """Build a new index version with another model from the catalog, then swap it in.

    Resumable: run the same command again after an interruption. On an embedded home stop
    `clipdex serve` first (the embedded store admits one process), or use a Qdrant server.

    Example: clipdex reindex --model ViT-B-32 --pretrained openai --json"""
    from clipdex.progress import TerminalProgress, wants_bar
    from core.catalog.index_versions import VersionRefused
    from core.diskspace import check_free_space, write_paths
    from core.encoder import ModelSpec, OpenClipEncoder
    from core.runtime import decode_limits
    from ingest.reindex import ReindexPlan, ReindexRefused
    from ingest.reindex import reindex as run_reindex

    with opened_runtime() as runtime:
        settings = runtime.settings
        spec = ModelSpec(model, pretrained or "openai", settings.device, settings.precision)
        encoder = OpenClipEncoder(spec)
        space = write_paths(settings.home, settings.blobs, settings.catalog_url)
        plan = ReindexPlan(
            encoder=encoder,
            limits=decode_limits(settings, encoder.preprocess),
            batch_size=settings.batch_size,
            decode_workers=settings.decode_workers,
            swap=swap,
            before_write=lambda: check_free_space(space, settings.min_free_bytes),
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
    if json_output:
        print_json(report.as_dict())
        return
    typer.echo(
        f"index version {report.version} ({shown(report.model)}): {report.indexed} indexed, "
        f"{report.points} points; {report.encoded} encoded, {report.reused} reused, "
        f"{report.failed} failed, {report.removed} removed in {report.seconds:.1f}s; "
        f"state {report.state}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command()(reindex)
