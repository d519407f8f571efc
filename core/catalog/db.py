"""Engines and sessions for the catalog: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 10
# Plain and Heroku-style schemes, and psycopg 2's, all go to psycopg 3 (the one driver installed).
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg2"}


class CatalogUnreachable(OperationalError):
    """The catalog database cannot be connected to. Still an ``OperationalError`` (workers retry
    those); its message is one line naming the URL without its password."""

    def __init__(self, url: URL, error: OperationalError) -> None:
        super().__init__(error.statement, error.params, error.orig or error)
        self.url = url.render_as_string(hide_password=True)
        reason = str(error.orig or error).strip().splitlines() or ["connection failed"]
        self.reason = reason[0]

    def __str__(self) -> str:
        return f"cannot connect to the catalog database {self.url}: {self.reason}"


class CatalogDamaged(DatabaseError):
    """The SQLite catalog file is not a database, or a damaged one (a truncated copy, a disk
    error): one line naming the file and the ways back, instead of a traceback."""

    def __init__(self, url: URL, error: DatabaseError) -> None:
        super().__init__(error.statement, error.params, error.orig or error)
        self.path = url.database or str(url)
        self.reason = str(error.orig or error).strip().splitlines()[0]

    def __str__(self) -> str:
        return (
            f"the catalog {self.path} is damaged ({self.reason}): restore it from a backup "
            "(README, Backup and restore); moving it away and running `clipdex ingest` again "
            "rebuilds only what the libraries hold (not uploads, tags or metadata)"
        )


_DAMAGED = ("file is not a database", "database disk image is malformed")


class BadCatalogUrl(ValueError):
    """CLIPDEX_DATABASE_URL is not a URL SQLAlchemy can use."""


def normalized_url(url: str) -> URL:
    """The URL as the engine uses it: ``postgres://`` and ``postgresql://`` mean psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise BadCatalogUrl(f"CLIPDEX_DATABASE_URL is not a database URL: {error}") from error
    if parsed.drivername in _POSTGRES_SCHEMES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str) -> Engine:
    """Create an engine. Never share it across fork: each process makes its own. A failure to
    connect raises :class:`CatalogUnreachable`."""
    parsed = normalized_url(url)
    try:
        engine = _create(parsed)
    except (ArgumentError, ImportError) as error:  # NoSuchModuleError is an ArgumentError
        shown = parsed.render_as_string(hide_password=True)
        raise BadCatalogUrl(f"cannot use the catalog database URL {shown}: {error}") from error
    event.listen(engine, "handle_error", _connect_failure(parsed))
    return engine


def _connect_failure(url: URL) -> Any:
    def handle(context: ExceptionContext) -> None:
        error = context.sqlalchemy_exception
        original = context.original_exception
        if (
            isinstance(error, DatabaseError)
            and not isinstance(error, CatalogDamaged)
            and type(original) is sqlite3.DatabaseError  # not its subclasses (busy, integrity)
            and str(original).startswith(_DAMAGED)
        ):
            raise CatalogDamaged(url, error) from original
        connecting = context.connection is None and isinstance(error, OperationalError)
        if connecting and not isinstance(error, CatalogUnreachable):
            assert isinstance(error, OperationalError)
            raise CatalogUnreachable(url, error) from context.original_exception

    return handle


def _create(parsed: URL) -> Engine:
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_pre_ping=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# Advisory lock keys, one per kind of work that processes sharing a catalog do in turns.
REGISTER_LOCK = 0x636C6970_72656769  # "clipregi": registering scanned files, one run at a time
MIGRATE_LOCK = 0x636C6970_6D696772  # "clipmigr": schema upgrades


def take_turns(
    db: Session | Connection, key: int, waiting: Callable[[], None] = lambda: None
) -> None:
    """Hold ``key`` until the transaction of ``db`` ends, so that processes doing the same
    work on one PostgreSQL catalog take turns; ``waiting`` is called first when another one
    holds it. SQLite serializes its writers itself: nothing to do there."""
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    if dialect.name != "postgresql":
        return
    if not db.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key}).scalar():
        waiting()
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
