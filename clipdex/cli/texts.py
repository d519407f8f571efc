"""Named text sets for image -> text search: ``texts add``, ``texts list``, ``texts search``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipdex.cli.common import JsonOption, fail, given_path, opened_runtime, print_json
from clipdex.display import shown

texts_app = typer.Typer(
    help="Named text sets (captions, labels) for image -> text search.\n\n"
    "Example: clipdex texts add animals labels.txt && clipdex texts search animals --image cat.jpg"
)


@texts_app.command("add")
def texts_add(
    name: Annotated[str, typer.Argument(help="Set name (letters, digits, - _ .).")],
    file: Annotated[
        Path, typer.Argument(help="A text file, one text per line.", parser=given_path)
    ],
    json_output: JsonOption = False,
) -> None:
    """Encode every line of FILE into the text set NAME (a new set, or added to an existing one).

    Example: clipdex texts add animals labels.txt --json  ->  {"name": "animals", "count": 80}
    """
    from search.texts import add_texts

    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read {file}: {error}")
    with opened_runtime() as runtime:
        info = add_texts(runtime, name, lines)
    if json_output:
        print_json({"name": info.name, "count": info.count})
    else:
        typer.echo(f"{shown(info.name)}: {info.count} texts")


@texts_app.command("list")
def texts_list(json_output: JsonOption = False) -> None:
    """The text sets of the live index, with how many texts each holds.

    Example: clipdex texts list --json
    """
    from search.texts import list_text_sets

    with opened_runtime() as runtime:
        sets = list_text_sets(runtime)
    if json_output:
        print_json([{"name": s.name, "count": s.count} for s in sets])
        return
    for text_set in sets:
        typer.echo(f"{shown(text_set.name)}\t{text_set.count}")


@texts_app.command("search")
def texts_search(
    name: Annotated[str, typer.Argument(help="Text set name.")],
    image: Annotated[
        Path | None, typer.Option("--image", help="Image file.", parser=given_path)
    ] = None,
    asset_id: Annotated[str | None, typer.Option("--asset", help="Indexed asset id.")] = None,
    limit: Annotated[int, typer.Option(help="How many texts.")] = 5,
    json_output: JsonOption = False,
) -> None:
    """Image -> text: the texts of NAME that best describe an image (a file or an indexed asset).

    Example: clipdex texts search animals --image cat.jpg --limit 3
    """
    from search.engine import SearchService

    with opened_runtime() as runtime:
        hits = SearchService(runtime).texts_for_image(name, image, asset_id, limit)
    if json_output:
        print_json([{"text": h.text, "score": h.score} for h in hits])
        return
    for hit in hits:
        typer.echo(f"{hit.score:.4f}  {shown(hit.text)}")


def register(app: typer.Typer) -> None:
    app.add_typer(texts_app, name="texts")
