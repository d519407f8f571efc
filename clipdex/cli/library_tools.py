"""Looking across the whole library: ``duplicates`` (near-duplicate groups) and the library mode
of ``classify`` (zero-shot labels written into each asset's metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipdex.cli.common import (
    JsonOption,
    catalog_path,
    fail,
    note_random_weights,
    opened_runtime,
    print_json,
)
from clipdex.display import shown
from core.paths import resolved


def folder_key(folder: Path | None) -> str | None:
    """A folder as the payload's ``folders`` holds it (absolute, symlinks resolved)."""
    return str(resolved(folder)) if folder is not None else None


def duplicates(
    threshold: Annotated[
        float,
        typer.Option(help="Cosine similarity, in (0, 1], from which two images are duplicates."),
    ] = 0.95,
    folder: Annotated[
        Path | None,
        typer.Option(
            help="Only images under this folder.", show_default=False, parser=catalog_path
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Group near duplicates across the library: re-saves, resizes, light crops and edits of one
    picture, by the vectors of the live index (two images whose cosine similarity reaches the
    threshold are in one group, and so are their own near duplicates). Largest group first.

    Compares every pair once in blocks: ~n^2/2 dot products (100k images: minutes on a small
    CPU). Nothing is deleted; the report is for you to review.

    Example: clipdex duplicates --threshold 0.97 --folder ~/Pictures/2024 --json
    """
    from search.duplicates import find_duplicates
    from search.selection import selected_ids

    with opened_runtime() as runtime:
        _, index = runtime.existing_index()
        ids = selected_ids(index, runtime.sessions, folder_key(folder))
        report = find_duplicates(index, threshold, ids)
        note_random_weights(runtime)
    if json_output:
        print_json(report.as_dict())
        return
    for number, group in enumerate(report.groups, start=1):
        typer.echo(f"group {number}: {len(group.members)} images")
        for member in group.members:
            extra = f" (+{len(member.paths) - 1} more paths)" if len(member.paths) > 1 else ""
            typer.echo(f"  {member.score:.4f}  {shown(member.path)}{extra}")
    typer.echo(
        f"{len(report.groups)} groups of near duplicates among {report.compared} images "
        f"(cosine >= {report.threshold})"
    )


def register(app: typer.Typer) -> None:
    app.command()(duplicates)


def tag_library(
    labels: list[str],
    folder: Path | None,
    key: str | None,
    templates: list[str] | None,
    json_output: bool,
) -> None:
    """``classify --folder F --tag KEY LABEL...``: the best label of each asset under F (every
    asset without --folder) written into its metadata as KEY (and KEY_score)."""
    from search.engine import SearchService
    from search.selection import selected_ids
    from search.tagging import TagRequest, tag_assets

    if key is None:
        fail("give --tag KEY: the metadata key the labels are written under")
    with opened_runtime() as runtime:
        runtime.existing_index()  # nothing ingested yet: one line, no empty index created
        target = SearchService(runtime).target()
        ids = selected_ids(target.index, runtime.sessions, folder_key(folder))
        request = TagRequest(labels, key, templates)
        report = tag_assets(target, runtime.sessions, request, ids,
                            runtime.settings.classify_templates)  # fmt: skip
        note_random_weights(runtime)
    if json_output:
        print_json(report.as_dict())
        return
    counts = ", ".join(f"{shown(label)} {count}" for label, count in report.counts.most_common())
    typer.echo(f"tagged {report.tagged} assets with {shown(report.key)}: {counts or 'none'}")
