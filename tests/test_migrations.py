from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from core.catalog.db import make_engine
from core.catalog.models import Base
from migrations.runner import alembic_config, upgrade_to_head

TABLES = {
    "assets", "locations", "index_versions", "asset_index_states", "failures", "ingest_runs",
}  # fmt: skip


def check_upgrade(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        upgrade_to_head(engine)  # a second upgrade is a no-op
    finally:
        engine.dispose()


@pytest.mark.unit
def test_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


@pytest.mark.unit
def test_sqlite_upgrade_from_empty_has_no_drift(tmp_path: Path) -> None:
    check_upgrade(f"sqlite:///{tmp_path / 'catalog.db'}")


@pytest.mark.unit
def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    engine.dispose()


@pytest.mark.services
def test_postgres_upgrade_from_empty_has_no_drift(fresh_postgres: str) -> None:
    check_upgrade(fresh_postgres)


def test_the_cheap_head_reading_agrees_with_alembic() -> None:
    """clipdex reads the head revision without Alembic's script loader; it must agree."""
    from migrations.runner import MIGRATIONS_DIR, head_revision

    assert [head_revision()] == ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()


def test_services_refuse_a_catalog_that_is_not_at_head(tmp_path: Path) -> None:
    from migrations.runner import CatalogNotAtHead, check_at_head

    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        with pytest.raises(CatalogNotAtHead, match="clipdex migrate"):
            check_at_head(engine)
        upgrade_to_head(engine)
        check_at_head(engine)
    finally:
        engine.dispose()


@pytest.mark.services
def test_commands_starting_at_once_on_a_new_postgres_database_take_turns(
    fresh_postgres: str,
) -> None:
    """compose's migrate service and an operator's command, both upgrading a new database."""
    from concurrent.futures import ThreadPoolExecutor

    from migrations.runner import check_at_head

    engines = [make_engine(fresh_postgres) for _ in range(4)]
    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            list(pool.map(upgrade_to_head, engines))  # none raises: the others wait, then see head
        check_at_head(engines[0])
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_catalog_newer_than_this_code_is_refused_in_one_line_and_left_alone(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """clipdex rolled back after a newer version migrated the catalog."""
    from migrations.runner import CatalogNotAtHead, check_at_head, current_revision

    url = request.getfixturevalue("fresh_postgres") if kind == "postgres" else (
        f"sqlite:///{tmp_path / 'catalog.db'}"
    )  # fmt: skip
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        for step in (upgrade_to_head, check_at_head):
            with pytest.raises(CatalogNotAtHead, match="0099, newer than this clipdex knows"):
                step(engine)
        assert current_revision(engine) == "0099"
    finally:
        engine.dispose()


@pytest.mark.services
def test_only_migrate_upgrades_a_shared_catalog(fresh_postgres: str, tmp_path: Path) -> None:
    """An operator runs a newer clipdex's `status` against the production catalog while the
    servers and workers still run the older code: the schema must not change behind them.
    A new, empty database is still created by the first command."""
    from alembic import command

    from migrations.runner import current_revision, head_revision
    from tests.conftest import run_cli

    engine = make_engine(fresh_postgres)
    try:
        first = run_cli(tmp_path / "home", "status", CLIPDEX_DATABASE_URL=fresh_postgres)
        assert first.returncode == 0, first.stderr
        assert current_revision(engine) == head_revision()  # a new database: created

        command.downgrade(alembic_config(fresh_postgres), "0004")
        older = run_cli(tmp_path / "home", "status", CLIPDEX_DATABASE_URL=fresh_postgres)
        assert older.returncode == 2
        assert "clipdex migrate" in older.stderr and "0004" in older.stderr
        assert "Traceback" not in older.stderr and len(older.stderr.strip().splitlines()) == 1
        assert current_revision(engine) == "0004"  # left alone

        migrated = run_cli(tmp_path / "home", "migrate", CLIPDEX_DATABASE_URL=fresh_postgres)
        assert migrated.returncode == 0, migrated.stderr
        assert f"upgraded the catalog from 0004 to the newest revision ({head_revision()})" in (
            migrated.stdout
        )
        assert current_revision(engine) == head_revision()
        again = run_cli(tmp_path / "home", "status", CLIPDEX_DATABASE_URL=fresh_postgres)
        assert again.returncode == 0, again.stderr
    finally:
        engine.dispose()
