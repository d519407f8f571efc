"""What every command shares: the app, one-line errors, JSON output and the opened kernel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from core.runtime import Runtime

app = typer.Typer(
    help="CLIP retrieval: ingest image libraries, search them with words or images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"clipdex: error: {message}", err=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@contextmanager
def opened_runtime() -> Iterator[Runtime]:
    """Open the kernel (the CLI owns the catalog schema: it upgrades it first) and turn every
    expected failure into one clear line and exit code 2."""
    from clipdex.catalog import prepare_catalog
    from clipdex.errors import EXPECTED, message_of
    from core.runtime import open_runtime
    from core.settings import load_settings
    from core.store.base import StoreError

    try:
        runtime = open_runtime(load_settings())
    except (StoreError, OSError) as error:
        fail(str(error))
    try:
        prepare_catalog(runtime.settings, runtime.engine, owner=True)
        yield runtime
    except EXPECTED as error:
        fail(message_of(error))
    except FileNotFoundError as error:
        fail(str(error))
    finally:
        runtime.close()


def note_random_weights(runtime: Runtime) -> None:
    """Say on stderr when the live index's model has random weights; loads no model."""
    from core.catalog.index_versions import identity_of

    identity = identity_of(runtime.live_version())
    if identity.random_weights:
        typer.echo(f"clipdex: note: model is {identity.label}", err=True)
