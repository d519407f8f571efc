"""Run and check Alembic migrations programmatically.

One owner upgrades: the CLI for the embedded default, compose's one-shot ``migrate`` service for
a deployment. The API and workers only check that the catalog is at head (:func:`check_at_head`)
and stop with one line when it is not.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from core.catalog.db import MIGRATE_LOCK, take_turns

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent
VERSION_TABLE = "alembic_version"


class CatalogNotAtHead(RuntimeError):
    """The catalog's schema is older (or newer) than this code; the message says what to run."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str:
    """The newest revision, read from the version files' ``revision``/``down_revision``
    assignments. Alembic's own script loader costs most of a second of imports, which every
    command would pay just to learn there is nothing to do (a test checks both agree)."""
    return _revisions()[1]


@cache
def known_revisions() -> frozenset[str]:
    """Every revision this code has a migration for."""
    return _revisions()[0]


def _revisions() -> tuple[frozenset[str], str]:
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.AnnAssign | ast.Assign):
                target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
                name = target.id if isinstance(target, ast.Name) else ""
                value = ast.literal_eval(node.value) if node.value is not None else None
                if name == "revision":
                    revisions.add(str(value))
                elif name == "down_revision" and value is not None:
                    parents.update([value] if isinstance(value, str) else value)
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads; merge them into one")
    return frozenset(revisions), heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _revision_of(connection)


def _revision_of(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    versions = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return versions[0] if len(versions) == 1 else None


def upgrade_to_head(engine: Engine) -> None:
    """Bring the catalog schema to the newest revision, in a transaction; when it is already
    there, return without loading Alembic at all. On PostgreSQL, upgrades take turns (a
    transaction-scoped advisory lock), so two commands starting at once on a new database do
    not both create it: the second finds it at head. A catalog newer than this code is
    refused, never touched."""
    current = current_revision(engine)
    if current == head_revision():
        return
    _refuse_newer(engine, current)
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        take_turns(connection, MIGRATE_LOCK)
        current = _revision_of(connection)
        if current == head_revision():
            return  # another process upgraded it while we waited
        _refuse_newer(engine, current)  # ... or a newer clipdex did
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _refuse_newer(engine: Engine, current: str | None) -> None:
    if current is not None and current not in known_revisions():
        raise CatalogNotAtHead(
            f"the catalog at {engine.url.render_as_string(hide_password=True)} is at revision "
            f"{current}, newer than this clipdex knows (its newest is {head_revision()}): run "
            "the clipdex version that migrated it, or restore the catalog from a backup"
        )


def check_at_head(engine: Engine) -> None:
    """Raise :class:`CatalogNotAtHead` unless the catalog is exactly at this code's head."""
    current, head = current_revision(engine), head_revision()
    _refuse_newer(engine, current)
    if current != head:
        shown = current or "empty (never migrated)"
        raise CatalogNotAtHead(
            f"the catalog at {engine.url.render_as_string(hide_password=True)} is at revision "
            f"{shown}, this clipdex needs {head}: run `clipdex migrate` (or compose's migrate "
            "service) first"
        )
