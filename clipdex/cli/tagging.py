"""Your own metadata: ``tag`` (set or remove key=value pairs on an asset)."""

from __future__ import annotations

from typing import Annotated

import typer

from clipdex.cli.common import (
    JsonOption,
    expected_errors,
    fail,
    opened_runtime,
    print_json,
    served_home,
)
from clipdex.display import shown


def parse_pairs(pairs: list[str], remove: list[str]) -> dict[str, str | list[str] | None]:
    """``key=value`` words (a key given twice gets a list) and keys to remove, as changes."""
    from ingest.metadata import checked

    changes: dict[str, str | list[str] | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"{pair!r} is not key=value")
        earlier = changes.get(key)
        if earlier is None:
            changes[key] = value
        else:
            changes[key] = [*([earlier] if isinstance(earlier, str) else earlier), value]
    for key in remove:
        if key in changes:
            fail(f"{key!r} is both set and removed")
        changes[key] = None
    if not changes:
        fail("give key=value pairs to set, or --remove KEY")
    return checked(changes, removals=True)


def tag(
    asset: Annotated[str, typer.Argument(help="An asset id, or the path of an indexed file.")],
    pairs: Annotated[
        list[str] | None, typer.Argument(help="key=value to set (a key twice: a list).")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="A key to remove (repeatable).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Set or remove your own metadata on an asset. It is returned with every hit and asset
    and filterable (`clipdex search ... --where key=value`); nothing is encoded again.

    Example: clipdex tag ~/Pictures/beach.jpg album=summer people=ann people=bob --remove draft"""
    from ingest.metadata import asset_for, update_metadata

    with expected_errors():
        changes = parse_pairs(pairs or [], remove or [])
    home = served_home()
    if home is None:
        with opened_runtime() as runtime:
            asset_id, meta = update_metadata(runtime, asset, changes)
    else:  # `clipdex serve` owns this embedded home: it applies the change (PATCH)
        with opened_runtime() as runtime, runtime.sessions() as session:
            asset_id = asset_for(session, asset).id  # a path is looked up in the catalog here
        with expected_errors():
            body = {"metadata": changes}
            done = home.client.call("PATCH", f"/v1/assets/{asset_id}", json=body)
        meta = done["metadata"]
    if json_output:
        print_json({"id": asset_id, "metadata": meta})
        return
    shown_meta = ", ".join(f"{k}={v}" for k, v in sorted(meta.items())) or "(no metadata)"
    typer.echo(f"{asset_id}  {shown(shown_meta)}")


def register(app: typer.Typer) -> None:
    app.command()(tag)
