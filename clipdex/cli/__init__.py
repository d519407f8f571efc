"""The ``clipdex`` command, split by command group. Each group module registers its commands
on the one Typer app. Heavy imports happen inside commands, so ``clipdex --help`` stays
instant and loads no torch."""

from __future__ import annotations

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

__all__ = ["app", "main"]

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


def main() -> None:
    app()
