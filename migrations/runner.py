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

from sqlalchemy import Engine, inspect, text

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
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        versions = list(rows)
    return versions[0] if len(versions) == 1 else None


def upgrade_to_head(engine: Engine) -> None:
    """Bring the catalog schema to the newest revision, in a transaction; when it is already
    there, return without loading Alembic at all."""
    if current_revision(engine) == head_revision():
        return
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def check_at_head(engine: Engine) -> None:
    """Raise :class:`CatalogNotAtHead` unless the catalog is exactly at this code's head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        shown = current or "empty (never migrated)"
        raise CatalogNotAtHead(
            f"the catalog at {engine.url.render_as_string(hide_password=True)} is at revision "
            f"{shown}, this clipdex needs {head}: run `clipdex migrate` (or compose's migrate "
            "service) first"
        )
