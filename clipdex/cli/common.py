"""What every command shares: the app, one-line errors, JSON output and the opened kernel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from clipdex.remote import RemoteHome
    from core.runtime import Runtime
    from core.settings import Settings

app = typer.Typer(
    help="CLIP retrieval: ingest image libraries, search them with words or images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def given_path(text: str) -> Path:
    """A path argument as typed (the ``parser`` of every path parameter). An empty one is
    refused: it is what an unset shell variable leaves (``clipdex ingest "$PHOTOS"``), and
    ``Path("")`` is the working folder, which may be the whole home."""
    if not text:
        raise typer.BadParameter(
            "the path is empty (an unset shell variable?); name a path, or . for this folder"
        )
    return Path(text)


def catalog_path(text: str) -> Path:
    """:func:`given_path` for a path matched against the catalog's paths (a ``--folder``
    filter): it must be valid UTF-8, as every indexed path is (no file name from another
    encoding is indexed)."""
    from core.paths import is_utf8
    from ingest.scan import stored_form

    path = given_path(text)
    if not is_utf8(text):
        raise typer.BadParameter(
            f"{stored_form(text)} is not valid UTF-8, and no indexed path is: rename the folder "
            "and ingest it again"
        )
    return path


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr (control characters in the message are escaped) and exit ``code``."""
    from clipdex.display import shown

    typer.echo(f"clipdex: error: {shown(message)}", err=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def checked_settings(json_logs: bool = False) -> Settings:
    """``load_settings()``, with a refused ``CLIPDEX_*`` value raised as ``BadSettings``.
    ``json_logs``: warnings go out as JSON lines (``serve --json``, ``worker --json``)."""
    from pydantic import ValidationError

    from clipdex.errors import BadSettings
    from core.settings import load_settings

    try:
        settings = load_settings()
    except ValidationError as error:
        raise BadSettings.of(error) from None
    _warn_unknown_variables(json_logs)
    return settings


# Read by clipdex outside the settings: a hidden worker option, and the tests' PostgreSQL.
OTHER_VARIABLES = frozenset({"CLIPDEX_FAULT_CRASH_ON_SHA256", "CLIPDEX_TEST_POSTGRES"})
_warned: set[str] = set()


def warn(message: str, json_logs: bool = False) -> None:
    """A warning on stderr: ``clipdex: warning: ...``, or one JSON log line."""
    if json_logs:
        from clipdex.jsonlog import json_warning

        json_warning(message)
    else:
        typer.echo(f"clipdex: warning: {message}", err=True)


def _warn_unknown_variables(json_logs: bool) -> None:
    """A misspelt ``CLIPDEX_*`` variable is ignored by the settings: say so, once, with the
    likely name (``CLIPDEX_CATALOG_URL`` would otherwise leave a SQLite catalog in use)."""
    import difflib
    import os

    from core.settings import Settings

    known = {f"CLIPDEX_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    suffixes = sorted(known_name.removeprefix("CLIPDEX_") for known_name in known)
    for name in sorted(os.environ):  # the settings read names in any case
        if (
            name.upper().startswith("CLIPDEX_")
            and name.upper() not in known
            and name not in _warned
        ):
            _warned.add(name)
            close = difflib.get_close_matches(name[8:].upper(), suffixes, n=1, cutoff=0.6)
            hint = f"; did you mean CLIPDEX_{close[0]}?" if close else ""
            warn(f"{name} is not a clipdex setting, ignored{hint}", json_logs)


@contextmanager
def expected_errors() -> Iterator[None]:
    """Every expected failure (the error table, missing files) as one line and exit code 2."""
    from clipdex.errors import EXPECTED, is_expected, message_of
    from search.client import ClipdexError
    from search.query import BadQuery

    try:
        yield
    except BadQuery as error:  # the user typed it: say how it was read (HTTP does not echo it)
        fail(error.detailed)
    except EXPECTED as error:
        fail(message_of(error))
    except ClipdexError as error:  # the home server's answer: the same line it would print
        fail(error.detail)
    except OSError as error:
        fail(str(error))
    except Exception as error:
        if not is_expected(error):  # a bug: its traceback
            raise
        fail(message_of(error))  # a row whose types are looked up lazily (qdrant-client)


def served_home() -> RemoteHome | None:
    """The ``clipdex serve`` that owns this embedded home now, or None (then open the kernel:
    no server runs, or the store is a Qdrant server every process opens itself)."""
    from clipdex.homeserver import live_server
    from clipdex.remote import RemoteHome

    with expected_errors():
        settings = checked_settings()
    if settings.qdrant_url is not None:
        return None
    server = live_server(settings.home)
    return RemoteHome(server) if server is not None else None


@contextmanager
def opened_runtime() -> Iterator[Runtime]:
    """Load the settings and open the kernel (the CLI owns the catalog schema: it upgrades it
    first), turning every expected failure, configuration included, into one clear line and
    exit code 2."""
    from clipdex.catalog import prepare_catalog
    from core.runtime import open_runtime

    with expected_errors():
        runtime = open_runtime(checked_settings())
        try:
            prepare_catalog(runtime.settings, runtime.engine, owner=True)
            yield runtime
        finally:
            runtime.close()


def note_random_weights(runtime: Runtime) -> None:
    """Say on stderr when the live index's model has random weights; loads no model."""
    from core.catalog.index_versions import identity_of

    identity = identity_of(runtime.live_version())
    if identity.random_weights:
        note_model(identity.label)


def note_model(label: str) -> None:
    from clipdex.display import shown

    typer.echo(f"clipdex: note: model is {shown(label)}", err=True)
