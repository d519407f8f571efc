"""Run and check Alembic migrations programmatically.

One owner upgrades: the CLI for the embedded default, compose's one-shot ``migrate`` service for
a deployment. The API and workers only check that the catalog is at head (:func:`check_at_head`)
and stop with one line when it is not.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent


class CatalogNotAtHead(RuntimeError):
    """The catalog's schema is older (or newer) than this code; the message says what to run."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads; merge them into one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Bring the catalog schema to the newest revision, in a transaction."""
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
