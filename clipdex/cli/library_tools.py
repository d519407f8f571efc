"""Looking across the whole library: ``duplicates`` (near-duplicate groups) and the library mode
of ``classify`` (zero-shot labels written into each asset's metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipdex.cli.common import JsonOption, note_random_weights, opened_runtime, print_json
from clipdex.display import shown


def folder_key(folder: Path | None) -> str | None:
    """A folder as the payload's ``folders`` holds it (absolute, symlinks resolved)."""
    return str(folder.expanduser().resolve()) if folder is not None else None


def duplicates(
    threshold: Annotated[
        float,
        typer.Option(help="Cosine similarity, in (0, 1], from which two images are duplicates."),
    ] = 0.95,
    folder: Annotated[
        Path | None, typer.Option(help="Only images under this folder.", show_default=False)
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

    with opened_runtime() as runtime:
        _, index = runtime.existing_index()
        report = find_duplicates(index, threshold, folder_key(folder))
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
