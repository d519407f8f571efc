"""Getting images out: ``search``, ``similar``, ``asset``, ``classify`` and ``embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

import clipdex.cli.search_options as so
from clipdex.cli.common import (
    JsonOption,
    catalog_path,
    checked_settings,
    expected_errors,
    fail,
    given_path,
    note_random_weights,
    opened_runtime,
    print_json,
    served_home,
)
from clipdex.display import shown
from core.paths import expand_user


def search(
    text: Annotated[
        list[str] | None,
        typer.Argument(
            help="Words ('beach +sunset -people'); a query that starts with - goes after -- "
            "or in --query."
        ),
    ] = None,
    query: Annotated[str | None, typer.Option(help="The words, as an option.")] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            help="Images like this one (repeatable; mixes with words).",
            parser=given_path,
        ),
    ] = None,
    weights: Annotated[
        list[float] | None,
        typer.Option(
            "--weight", help="Weight of the --image at the same position (default 1; -1 avoids)."
        ),
    ] = None,
    limit: so.Limit = None,
    offset: so.Offset = 0,
    folder: so.Folder = None,
    formats: so.Formats = None,
    min_width: so.MinWidth = None,
    min_height: so.MinHeight = None,
    max_width: so.MaxWidth = None,
    max_height: so.MaxHeight = None,
    orientation: so.Orientation = None,
    min_bytes: so.MinBytes = None,
    max_bytes: so.MaxBytes = None,
    camera_make: so.CameraMake = None,
    camera_model: so.CameraModel = None,
    where: so.Where = None,
    taken_after: so.TakenAfter = None,
    taken_before: so.TakenBefore = None,
    min_score: so.MinScore = None,
    cutoff: so.Cutoff = False,
    collapse: so.Collapse = None,
    mode: so.Mode = "vector",
    keyword_weight: so.KeywordWeight = 0.5,
    sort: so.Sort = "relevance",
    json_output: JsonOption = False,
) -> None:
    """Search with words, images, or both mixed (weighted), by meaning (CLIP), by keyword
    (file and folder names, tags, metadata, EXIF text) or both (--mode hybrid).

    Example: clipdex search beach +sunset -people --sort -taken_at --cutoff
    Example: clipdex search --image cat.jpg --weight 2 orange --mode vector
    Example: clipdex search IMG_0042 --mode keyword --where album=summer
    Example: clipdex search -- -20 degrees
    """
    from search.engine import SearchService

    options = so.build_options(locals())
    words = " ".join([*(text or []), *([query] if query else [])]).strip()
    if not words and not images:
        fail("give either TEXT or --image PATH (or both, to mix them)")
    if len(weights or []) > len(images or []):
        fail("each --weight goes with an --image; there are more weights than images")
    home = served_home()
    with expected_errors():
        terms = _terms(words, images or [], weights or [])
        if home is not None:  # `clipdex serve` owns this embedded home: it answers
            page = home.client.search_page(terms, options)
            home.note_random_weights()
        else:
            with opened_runtime() as runtime:
                page = SearchService(runtime).search_page(terms, options)
                note_random_weights(runtime)
    _print_page(page, offset, json_output)


def _terms(words: str, images: list[Path], weights: list[float]) -> list[Any]:
    """The query's terms: the words (with their + and - signs), then each image's bytes with
    its weight; the CLI reads the images, so the server needs no access to them."""
    from core.images import read_limited
    from search.query import BadQuery, Term, parse_terms

    try:
        terms = parse_terms(words) if words else []
        most = checked_settings().max_file_bytes
        for position, path in enumerate(images):
            weight = weights[position] if position < len(weights) else 1.0
            terms.append(Term("image", read_limited(expand_user(path), most), weight))
    except BadQuery as error:  # a weight of nan: say how it was read
        fail(error.detailed)
    return terms


def _print_page(page: Any, offset: int, json_output: bool) -> None:
    """The hits (``--json``: the list of hits, as before pages existed); then, on stderr so
    that stdout stays one line per hit, where the next page starts and the total if known."""
    if json_output:
        print_json([hit.as_dict() for hit in page.hits])
        return
    if not page.hits:
        typer.echo("no matches")
    for rank, hit in enumerate(page.hits, start=offset + 1):
        typer.echo(f"{rank:4d}  {hit.score:.4f}  {shown(hit.path)}")
    total = f" of {page.total}" if page.total is not None else ""
    if page.has_more:
        typer.echo(f"more{total}: --offset {offset + len(page.hits)}", err=True)
    elif page.hits and total:
        typer.echo(f"({page.total} in all)", err=True)


def similar(
    asset_id: Annotated[str, typer.Argument(help="An asset id from search results.")],
    limit: so.Limit = None,
    offset: so.Offset = 0,
    folder: so.Folder = None,
    formats: so.Formats = None,
    min_width: so.MinWidth = None,
    min_height: so.MinHeight = None,
    max_width: so.MaxWidth = None,
    max_height: so.MaxHeight = None,
    orientation: so.Orientation = None,
    min_bytes: so.MinBytes = None,
    max_bytes: so.MaxBytes = None,
    camera_make: so.CameraMake = None,
    camera_model: so.CameraModel = None,
    where: so.Where = None,
    taken_after: so.TakenAfter = None,
    taken_before: so.TakenBefore = None,
    min_score: so.MinScore = None,
    cutoff: so.Cutoff = False,
    collapse: so.Collapse = None,
    mode: so.Mode = "vector",
    keyword_weight: so.KeywordWeight = 0.5,
    sort: so.Sort = "relevance",
    json_output: JsonOption = False,
) -> None:
    """More like this: images similar to an indexed asset, with every filter of search.

    Example: clipdex similar 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --cutoff --sort -taken_at
    """
    from search.engine import SearchService

    options = so.build_options(locals())
    home = served_home()
    if home is not None:  # `clipdex serve` owns this embedded home: it answers
        with expected_errors():
            page = home.client.similar_page(asset_id, options)
        _print_page(page, offset, json_output)
        return
    with opened_runtime() as runtime:
        page = SearchService(runtime).similar_page(asset_id, options)
    _print_page(page, offset, json_output)


def asset(
    asset_id: Annotated[str, typer.Argument(help="An asset id.")],
    json_output: JsonOption = False,
) -> None:
    """What the catalog knows about one asset: paths, format, size, state.

    Example: clipdex asset 5f0c0e1a-8a4e-5b7e-9c1d-2f3a4b5c6d7e --json
    """
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
    image: Annotated[
        Path | None, typer.Option("--image", help="Image file.", parser=given_path)
    ] = None,
    asset_id: Annotated[str | None, typer.Option("--asset", help="Indexed asset id.")] = None,
    templates: Annotated[
        list[str] | None, typer.Option("--template", help="Prompt with a {} slot (repeatable).")
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(help="Tag every asset under this folder (with --tag).", parser=catalog_path),
    ] = None,
    tag: Annotated[
        str | None, typer.Option(help="Write each asset's best label into its metadata KEY.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Zero-shot classification of an image against labels, or, with --tag, of every asset
    (under --folder) with the label written into its metadata.

    Example: clipdex classify --image cat.jpg cat dog bird
    Example: clipdex classify --folder ~/Pictures --tag scene beach city forest
    """
    from search.engine import SearchService

    if tag is not None or folder is not None:
        from clipdex.cli.library_tools import tag_library

        if image is not None or asset_id is not None:
            fail("--folder/--tag classify the library: leave out --image and --asset")
        return tag_library(labels, folder, tag, templates, json_output)
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
        list[Path] | None,
        typer.Option("--image", help="Image file(s) to embed.", parser=given_path),
    ] = None,
    texts: Annotated[list[str] | None, typer.Option("--text", help="Text(s) to embed.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Print raw, L2-normalized model embeddings (no prompt templates).

    Example: clipdex embed --image cat.jpg --text "a cat" --json
    """
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
