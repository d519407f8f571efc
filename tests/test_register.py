"""Registering a scan: the pure classify step, statement counts that do not grow with the number
of files, and the batched failure writer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.db import make_engine, make_sessionmaker
from core.catalog.index_versions import ensure_active_index
from core.catalog.models import AssetState, Failure, Location
from core.ids import sha256_of_bytes
from ingest.hashing import Content
from ingest.records import record_failure, record_failures
from ingest.register import (
    FailureRow,
    KnownContent,
    KnownLocation,
    LocationWrite,
    RegisterPlan,
    classify,
    register,
)
from ingest.scan import FoundFile
from migrations.runner import upgrade_to_head
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit

X, Y = Content.of(sha256_of_bytes(b"x")), Content.of(sha256_of_bytes(b"y"))


def found(path: str, size: int = 1, mtime_ns: int = 100) -> FoundFile:
    return FoundFile(path, size, mtime_ns)


def known(id_: int, path: str, asset: Content, missing: bool = False) -> KnownLocation:
    return KnownLocation(id_, path, asset.asset_id, 1, 100, missing)


def plan_for(
    existing: list[KnownLocation],
    files: list[FoundFile],
    contents: dict[str, Content],
    states: dict[str, str | None] | None = None,
    failures: list[FailureRow] | None = None,
) -> RegisterPlan:
    by_path = {location.path: location for location in existing}
    return classify(by_path, files, contents, KnownContent(states or {}, failures or []))


def counts(plan: RegisterPlan) -> tuple[int, int, int, int, int]:
    return plan.new, plan.modified, plan.unchanged, plan.moved, plan.duplicates


def test_new_content_becomes_a_pending_asset_at_a_new_location() -> None:
    plan = plan_for([], [found("/l/a.jpg")], {"/l/a.jpg": X})
    assert counts(plan) == (1, 0, 0, 0, 0)
    assert [asset.id for asset in plan.new_assets] == [X.asset_id]
    assert plan.new_states == {X.asset_id}
    assert plan.new_locations == {"/l/a.jpg": LocationWrite(X.asset_id, 1, 100)}
    assert plan.touched == {X.asset_id} and not plan.orphan_candidates


def test_unchanged_files_need_no_digest_and_write_nothing() -> None:
    plan = plan_for([known(1, "/l/a.jpg", X)], [found("/l/a.jpg")], {})
    assert counts(plan) == (0, 0, 1, 0, 0)
    assert not (plan.new_assets or plan.new_locations or plan.updated_locations or plan.touched)


def test_a_new_mtime_with_the_same_bytes_is_unchanged_but_refreshed() -> None:
    plan = plan_for(
        [known(1, "/l/a.jpg", X)],
        [found("/l/a.jpg", mtime_ns=200)],
        {"/l/a.jpg": X},
        {X.asset_id: "indexed"},
    )
    assert counts(plan) == (0, 0, 1, 0, 0)
    assert plan.updated_locations == {1: LocationWrite(X.asset_id, 1, 200)}


def test_changed_bytes_at_a_known_path_are_modified_and_the_old_content_may_be_orphaned() -> None:
    plan = plan_for(
        [known(1, "/l/a.jpg", X)],
        [found("/l/a.jpg", size=2)],
        {"/l/a.jpg": Y},
        {X.asset_id: AssetState.INDEXED},
        [FailureRow("/l/a.jpg", None, "read", "cannot read file")],
    )
    assert counts(plan) == (0, 1, 0, 0, 0)
    assert [asset.id for asset in plan.new_assets] == [Y.asset_id]
    assert plan.updated_locations == {1: LocationWrite(Y.asset_id, 2, 100)}
    assert plan.touched == {X.asset_id, Y.asset_id}
    assert plan.orphan_candidates == {X.asset_id}
    assert plan.forget_failures == ["/l/a.jpg"]


def test_known_bytes_under_a_new_path_are_a_move_when_the_old_path_vanished() -> None:
    plan = plan_for(
        [known(1, "/l/a.jpg", X)],
        [found("/l/b.jpg"), found("/l/c.jpg")],
        {"/l/b.jpg": X, "/l/c.jpg": X},
        {X.asset_id: AssetState.INDEXED},
    )
    assert counts(plan) == (0, 0, 0, 1, 1)  # the second copy is a duplicate
    assert plan.gone_locations == [1]
    assert set(plan.new_locations) == {"/l/b.jpg", "/l/c.jpg"}
    assert not (plan.new_assets or plan.new_states or plan.orphan_candidates)


def test_known_bytes_elsewhere_are_a_duplicate() -> None:
    plan = plan_for(
        [known(1, "/l/a.jpg", X)],
        [found("/l/a.jpg"), found("/l/copy.jpg")],
        {"/l/copy.jpg": X},
        {X.asset_id: AssetState.INDEXED},
    )
    assert counts(plan) == (0, 0, 1, 0, 1)
    assert not plan.gone_locations and plan.touched == {X.asset_id}


def test_vanished_paths_go_missing_and_forget_their_failures() -> None:
    plan = plan_for(
        [known(1, "/l/a.jpg", X), known(2, "/l/old.jpg", Y, missing=True)],
        [],
        {},
        failures=[FailureRow("/l/a.jpg", X.asset_id, "decode", "truncated")],
    )
    assert plan.gone_locations == [1]  # an already missing path is left alone
    assert plan.touched == plan.orphan_candidates == {X.asset_id}
    assert plan.forget_failures == ["/l/a.jpg"]


def test_a_path_with_failed_content_gets_the_failure_copied() -> None:
    failure = FailureRow("/elsewhere/a.jpg", X.asset_id, "decode", "truncated")
    plan = plan_for(
        [], [found("/l/b.jpg")], {"/l/b.jpg": X}, {X.asset_id: AssetState.FAILED}, [failure]
    )
    assert counts(plan) == (0, 0, 0, 0, 1)
    assert plan.copy_failures == [FailureRow("/l/b.jpg", X.asset_id, "decode", "truncated")]
    assert not plan.new_states  # the asset keeps its failed state


def test_a_changed_file_that_could_not_be_read_is_left_as_it_is() -> None:
    plan = plan_for([known(1, "/l/a.jpg", X)], [found("/l/a.jpg", size=9)], {})
    assert counts(plan) == (0, 0, 0, 0, 0)
    assert not (plan.updated_locations or plan.gone_locations or plan.touched)


@dataclass
class Catalog:
    engine: Engine
    sessions: sessionmaker[Session]
    version_id: int
    statements: list[str]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    upgrade_to_head(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        version_id = ensure_active_index(session, FakeEncoder().identity).id
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield Catalog(engine, sessions, version_id, statements)
    engine.dispose()


def make_files(root: Path, count: int) -> list[FoundFile]:
    folder = root / f"lib{count}"
    folder.mkdir()
    files = []
    for index in range(count):
        path = folder / f"{index:05d}.jpg"
        path.write_bytes(os.urandom(16))
        files.append(FoundFile(str(path), 16, path.stat().st_mtime_ns))
    return files


def statements_to_register(catalog: Catalog, root: Path, files: list[FoundFile]) -> int:
    catalog.statements.clear()
    with catalog.sessions() as session:
        result = register(session, catalog.version_id, [root], files, 2)
        session.commit()
    assert result.new + result.unchanged == len(files)
    return len(catalog.statements)


def test_registering_more_files_issues_no_more_statements(catalog: Catalog, tmp_path: Path) -> None:
    small, large = make_files(tmp_path, 50), make_files(tmp_path, 500)
    first = [statements_to_register(catalog, Path(f[0].path).parent, f) for f in (small, large)]
    again = [statements_to_register(catalog, Path(f[0].path).parent, f) for f in (small, large)]
    assert first[0] == first[1], catalog.statements
    assert again[0] == again[1] and again[1] <= first[1]
    with catalog.sessions() as session:
        assert len(session.scalars(select(Location.id)).all()) == 550


def test_batched_failures_match_the_per_path_writer(catalog: Catalog) -> None:
    batches: list[list[tuple[str, str, str, str | None]]] = [
        [(f"/l/{i}.jpg", "read", f"first {i}", None) for i in range(1200)],
        [("/l/0.jpg", "decode", "again", "asset-0"), ("/l/0.jpg", "decode", "thrice", None)],
        [(f"/l/{i}.jpg", "decode", f"second {i}", None) for i in range(600, 1300)],
    ]
    with catalog.sessions() as session:
        for rows in batches:
            catalog.statements.clear()
            record_failures(session, rows)
            assert len(catalog.statements) <= 10  # chunks of 500, never one per row
        batched = rows_of(session)
        session.rollback()
        for rows in batches:
            for path, stage, reason, asset_id in rows:
                record_failure(session, path, stage, reason, asset_id)
        session.flush()
        assert rows_of(session) == batched
    assert batched["/l/0.jpg"] == ("decode", "thrice", "asset-0", 3)
    assert batched["/l/700.jpg"] == ("decode", "second 700", None, 2)
    assert batched["/l/1250.jpg"] == ("decode", "second 1250", None, 1)
    assert len(batched) == 1300


def rows_of(session: Session) -> dict[str, tuple[str, str, str | None, int]]:
    return {
        row.path: (row.stage, row.reason, row.asset_id, row.attempts)
        for row in session.scalars(select(Failure))
    }
