"""The ``clipdex`` command, split by command group. Each group module registers its commands
on the one Typer app. Heavy imports happen inside commands, so ``clipdex --help`` stays
instant and loads no torch."""

from __future__ import annotations

from typing import Annotated, Any

from typer import Option

from clipdex.cli import (
    admin,
    distributed,
    evaluating,
    indexes,
    indexing,
    libraries,
    library_tools,
    recovery,
    searching,
    serving,
    tagging,
    texts,
    verifying,
)
from clipdex.cli.common import app
from clipdex.cli.helptext import plain_help

__all__ = ["app", "command", "main"]

VERSIONED = ("clipdex", "open_clip_torch", "torch")  # read from package metadata, not imported


def versions() -> dict[str, str]:
    """The installed versions of clipdex and of the model code it runs (no torch import)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _show_version(wanted: bool) -> None:
    if wanted:
        import typer

        found = versions()
        typer.echo(
            f"clipdex {found['clipdex']} (open_clip {found['open_clip_torch']}, "
            f"torch {found['torch']})"
        )
        raise typer.Exit()


@app.callback(
    help="CLIP retrieval: ingest image libraries, search them with words or images.\n\n"
    'Example: clipdex ingest ~/Pictures && clipdex search "a dog on the beach"'
)
def _root(
    version: Annotated[
        bool,
        Option("--version", is_eager=True, callback=_show_version,
               help="Print the versions of clipdex, open_clip and torch, and exit."),
    ] = False,
) -> None:  # fmt: skip
    """Options that come before the command."""


for _group in (
    indexing,
    libraries,
    searching,
    texts,
    admin,
    distributed,
    recovery,
    serving,
    verifying,
    indexes,
    evaluating,
    library_tools,
    tagging,
):
    _group.register(app)


def command() -> Any:
    """The click command the ``clipdex`` program runs, with plain help labels."""
    import typer.main

    return plain_help(typer.main.get_command(app))


def main() -> None:
    command()(prog_name="clipdex")
