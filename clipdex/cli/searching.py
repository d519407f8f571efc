"""Getting images out: ``search``, ``similar``, ``asset``, ``classify`` and ``embed``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from clipdex.cli.common import (
    JsonOption,
    expected_errors,
    fail,
    note_random_weights,
    opened_runtime,
    print_json,
    served_home,
)
from clipdex.display import shown


def _parse_date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        fail(f"{name} must be an ISO date such as 2024-06-30 or 2024-06-30T18:00, got {value!r}")


def search(
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="Find images similar to this one.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many hits.")] = 10,
    offset: Annotated[int, typer.Option(help="Skip this many hits (paging).")] = 0,
    folder: Annotated[Path | None, typer.Option(help="Only images under this folder.")] = None,
    formats: Annotated[
        list[str] | None, typer.Option("--format", help="Only these formats (JPEG, PNG...).")
    ] = None,
    min_width: Annotated[int | None, typer.Option(help="Minimum width in pixels.")] = None,
    min_height: Annotated[int | None, typer.Option(help="Minimum height in pixels.")] = None,
    taken_after: Annotated[str | None, typer.Option(help="EXIF date taken, from (ISO).")] = None,
    taken_before: Annotated[str | None, typer.Option(help="EXIF date taken, before (ISO).")] = None,
    min_score: Annotated[float | None, typer.Option(help="Drop hits below this cosine.")] = None,
    cutoff: Annotated[bool, typer.Option(help="Stop where the scores drop off.")] = False,
    collapse: Annotated[
        float | None, typer.Option(help="Collapse hits closer than this cosine (e.g. 0.95).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Search with words (TEXT, e.g. 'beach +sunset -people') or with an image (--image)."""
    from core.store.base import SearchFilter
    from search.engine import SearchService
    from search.query import SearchOptions

    if (text is None) == (image is None):
        fail("give either TEXT or --image PATH")
    filters = SearchFilter(
        folder=str(folder.expanduser().resolve()) if folder else None,
        formats=tuple(f.upper() for f in formats or ()),
        min_width=min_width,
        min_height=min_height,
        taken_after=_parse_date(taken_after, "--taken-after"),
        taken_before=_parse_date(taken_before, "--taken-before"),
    )
    options = SearchOptions(
        limit=limit, offset=offset, filters=filters, min_score=min_score, adaptive_cutoff=cutoff,
        collapse_duplicates=collapse,
    )  # fmt: skip
    home = served_home()
    if home is not None:  # `clipdex serve` owns this embedded home: it answers
        with expected_errors():
            hits = home.search(text, image, options)
            home.note_random_weights()
        _print_hits(hits, offset, json_output)
        return
    with opened_runtime() as runtime:
        service = SearchService(runtime)
        if image is not None:
            hits = service.image(image, options)
        else:
            hits = service.text(text or "", options)
        note_random_weights(runtime)
    _print_hits(hits, offset, json_output)


def _print_hits(hits: list[Any], offset: int, json_output: bool) -> None:
    if json_output:
        print_json([hit.as_dict() for hit in hits])
        return
    if not hits:
        typer.echo("no matches")
    for rank, hit in enumerate(hits, start=offset + 1):
        typer.echo(f"{rank:4d}  {hit.score:.4f}  {shown(hit.path)}")


def similar(
    asset_id: Annotated[str, typer.Argument(help="An asset id from search results.")],
    limit: Annotated[int, typer.Option(help="How many hits.")] = 10,
    offset: Annotated[int, typer.Option(help="Skip this many hits (paging).")] = 0,
    json_output: JsonOption = False,
) -> None:
    """More like this: images similar to an indexed asset."""
    from search.engine import SearchService
    from search.query import SearchOptions

    home = served_home()
    if home is not None:  # `clipdex serve` owns this embedded home: it answers
        with expected_errors():
            hits = home.similar(asset_id, SearchOptions(limit=limit, offset=offset))
        _print_hits(hits, offset, json_output)
        return
    with opened_runtime() as runtime:
        hits = SearchService(runtime).similar(asset_id, SearchOptions(limit=limit, offset=offset))
    _print_hits(hits, offset, json_output)


def asset(
    asset_id: Annotated[str, typer.Argument(help="An asset id.")],
    json_output: JsonOption = False,
) -> None:
    """What the catalog knows about one asset: paths, format, size, state."""
    from search.engine import SearchService

    home = served_home()
    if home is not None:  # `clipdex serve` owns this embedded home: it answers
        with expected_errors():
            info = home.asset(asset_id)
    else:
        with opened_runtime() as runtime:
            info = SearchService(runtime).asset(asset_id)
    if json_output:
        print_json(info.as_dict())
        return
    for key, value in info.as_dict().items():
        typer.echo(f"{key:>9}: {shown(value)}")


def classify(
    labels: Annotated[list[str], typer.Argument(help="Candidate labels.")],
    image: Annotated[Path | None, typer.Option("--image", help="Image file.")] = None,
    asset_id: Annotated[str | None, typer.Option("--asset", help="Indexed asset id.")] = None,
    templates: Annotated[
        list[str] | None, typer.Option("--template", help="Prompt with a {} slot (repeatable).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Zero-shot classification of an image against labels."""
    from search.engine import SearchService

    with opened_runtime() as runtime:
        scores = SearchService(runtime).classify(
            labels, image=image, asset_id=asset_id, templates=templates
        )
        note_random_weights(runtime)
    if json_output:
        print_json(
            [{"label": s.label, "probability": s.probability, "score": s.score} for s in scores]
        )
        return
    for score in scores:
        typer.echo(f"{score.probability:7.2%}  {score.score:.4f}  {shown(score.label)}")


def embed(
    images: Annotated[
        list[Path] | None, typer.Option("--image", help="Image file(s) to embed.")
    ] = None,
    texts: Annotated[list[str] | None, typer.Option("--text", help="Text(s) to embed.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Print raw, L2-normalized model embeddings (no prompt templates)."""
    import numpy as np

    from core.images import ImageRejected, decode_file
    from core.preprocess import to_model_input
    from core.runtime import decode_limits

    if not images and not texts:
        fail("give --image PATH and/or --text TEXT")
    results: list[dict[str, Any]] = []
    with opened_runtime() as runtime:
        encoder = runtime.encoder
        for path in images or []:
            try:
                decoded = decode_file(path, decode_limits(runtime.settings, encoder.preprocess))
            except ImageRejected as rejected:
                results.append({"input": str(path), "error": rejected.reason})
                continue
            pixels = to_model_input(decoded.image, encoder.preprocess)
            vector = encoder.encode_images(pixels[np.newaxis])[0]
            results.append({"input": str(path), "vector": vector.tolist()})
        if texts:
            for text, vector in zip(texts, encoder.encode_texts(texts), strict=True):
                results.append({"input": text, "vector": vector.tolist()})
        note_random_weights(runtime)
    if json_output:
        print_json(results)
    else:
        for row in results:
            text = row.get("error") or f"[{len(row['vector'])}-d] " + " ".join(
                f"{x:+.4f}" for x in row["vector"][:6]
            )
            typer.echo(f"{shown(row['input'])}: {shown(text)}")
    if any("error" in row for row in results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    for command in (search, similar, asset, classify, embed):
        app.command()(command)
