"""The filter, refinement, mode and sort flags that every search command takes (``search``,
``similar``), named as the HTTP API names them, and the ``SearchOptions`` they make."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clipdex.cli.common import catalog_path, checked_settings, expected_errors, fail

if TYPE_CHECKING:
    from search.query import SearchOptions

Limit = Annotated[
    int | None,
    typer.Option(help="How many hits (10 by default, or CLIPDEX_SEARCH_MAX_LIMIT if less)."),
]
Offset = Annotated[int, typer.Option(help="Skip this many hits (paging).")]
Folder = Annotated[
    Path | None, typer.Option(help="Only images under this folder.", parser=catalog_path)
]
Formats = Annotated[
    list[str] | None, typer.Option("--format", help="Only these formats (JPEG, PNG...).")
]
MinWidth = Annotated[int | None, typer.Option(help="Minimum width in pixels (as displayed).")]
MinHeight = Annotated[int | None, typer.Option(help="Minimum height in pixels (as displayed).")]
MaxWidth = Annotated[int | None, typer.Option(help="Maximum width in pixels (as displayed).")]
MaxHeight = Annotated[int | None, typer.Option(help="Maximum height in pixels (as displayed).")]
Orientation = Annotated[str | None, typer.Option(help="portrait, landscape or square.")]
MinBytes = Annotated[int | None, typer.Option(help="Smallest file size, in bytes.")]
MaxBytes = Annotated[int | None, typer.Option(help="Largest file size, in bytes.")]
CameraMake = Annotated[str | None, typer.Option(help="EXIF camera make, exactly (Canon).")]
CameraModel = Annotated[str | None, typer.Option(help="EXIF camera model, exactly (EOS R5).")]
Where = Annotated[
    list[str] | None,
    typer.Option("--where", help="User metadata KEY=VALUE, exactly (repeatable: all must hold)."),
]
TakenAfter = Annotated[str | None, typer.Option(help="EXIF date taken, from (ISO).")]
TakenBefore = Annotated[str | None, typer.Option(help="EXIF date taken, before (ISO).")]
MinScore = Annotated[float | None, typer.Option(help="Drop hits below this cosine.")]
Cutoff = Annotated[bool, typer.Option(help="Stop where the scores drop off.")]
Collapse = Annotated[
    float | None, typer.Option(help="Collapse hits closer than this cosine (e.g. 0.95).")
]
Mode = Annotated[
    str,
    typer.Option(
        help="vector (CLIP), keyword (names, folders, tags, metadata, EXIF text) or hybrid."
    ),
]
KeywordWeight = Annotated[float, typer.Option(help="Hybrid: the keyword side's share, 0 to 1.")]
Sort = Annotated[
    str,
    typer.Option(help="relevance, taken_at (oldest first) or -taken_at (newest first)."),
]


def parse_date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        fail(f"{name} must be an ISO date such as 2024-06-30 or 2024-06-30T18:00, got {value!r}")


def build_options(flags: dict[str, Any]) -> SearchOptions:
    """``SearchOptions`` from a command's flags (its ``locals()``, named as above), checked
    here by the engine's own checks, before any server or store is asked: a bad option is the
    same one line with or without a ``clipdex serve`` (whose JSON cannot even carry NaN)."""
    from search.query import BadQuery, checked_options

    with expected_errors():
        max_limit = checked_settings().search_max_limit
    limit = flags["limit"]
    try:  # the folder is resolved against this working folder, as ingest resolves paths
        checked = checked_options(_options(flags, limit), max_limit)
    except BadQuery as error:
        fail(error.detailed)
    # No --limit stays unset: whoever answers (this process, or a `clipdex serve` with its own
    # CLIPDEX_SEARCH_MAX_LIMIT) gives its default page.
    return replace(checked, limit=limit)


def _options(flags: dict[str, Any], limit: int | None) -> SearchOptions:
    from core.store.base import SearchFilter
    from search.query import SearchOptions, parse_where

    where = tuple(parse_where(pair) for pair in flags["where"] or ())
    filters = SearchFilter(
        folder=_local_folder(flags["folder"]),
        formats=tuple(f.upper() for f in flags["formats"] or ()),
        min_width=flags["min_width"],
        min_height=flags["min_height"],
        taken_after=parse_date(flags["taken_after"], "--taken-after"),
        taken_before=parse_date(flags["taken_before"], "--taken-before"),
        max_width=flags["max_width"],
        max_height=flags["max_height"],
        orientation=flags["orientation"],
        min_bytes=flags["min_bytes"],
        max_bytes=flags["max_bytes"],
        camera_make=flags["camera_make"],
        camera_model=flags["camera_model"],
        metadata=tuple(sorted(where)),
    )
    return SearchOptions(
        limit=limit, offset=flags["offset"], filters=filters,
        min_score=flags["min_score"], adaptive_cutoff=flags["cutoff"],
        collapse_duplicates=flags["collapse"], mode=flags["mode"],
        keyword_weight=flags["keyword_weight"], sort=flags["sort"],
    )  # fmt: skip


def _local_folder(folder: Path | None) -> str | None:
    """A folder this user typed, resolved as ingest resolves paths (the working folder, ``~``,
    symlinks): the engine then takes it as it is, with or without a server."""
    from core.paths import UnusablePath, resolved
    from search.query import BadQuery

    if folder is None or not str(folder).strip():
        return None if folder is None else str(folder)
    try:
        return str(resolved(folder))
    except UnusablePath as error:
        raise BadQuery("folder is not a usable path", error) from None
