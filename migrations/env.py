"""Alembic environment: the URL comes from clipdex settings unless a connection is handed in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from core.catalog.db import make_engine
from core.catalog.models import Base
from core.settings import load_settings

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or load_settings().catalog_url
    engine = make_engine(url)
    with engine.connect() as fresh:
        _configure(fresh)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("clipdex migrations run online only (alembic upgrade head)")
run_migrations_online()
