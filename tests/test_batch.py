"""The batch task's body: idempotent, capped, and it adopts what a killed delivery stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from core.catalog.models import AssetIndexState, Failure
from core.runtime import Runtime
from ingest.batch import index_assets
from ingest.queueing import enqueue_pending
from ingest.run import ingest
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


def queued(runtime: Runtime, library: Path) -> list[str]:
    sent: list[list[str]] = []
    ingest(runtime, [library], dispatch=lambda _version, ids: sent.append(ids))
    return [asset for batch in sent for asset in batch]


def test_a_second_delivery_does_nothing(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    ids = queued(runtime, library)
    version = runtime.live_version().id
    first = index_assets(runtime, version, ids)
    again = index_assets(runtime, version, ids)
    assert (first.encoded, again.encoded, again.skipped) == (8, 0, 8)
    assert fake_encoder.images_encoded == 8


def test_attempts_past_the_cap_go_to_the_failures_table(runtime: Runtime, library: Path) -> None:
    ids = queued(runtime, library)
    version = runtime.live_version().id
    with runtime.sessions() as session:  # as if three deliveries had died mid-batch
        session.execute(update(AssetIndexState).values(attempts=runtime.settings.max_attempts))
        session.commit()
    outcome = index_assets(runtime, version, ids)
    assert (outcome.gave_up, outcome.encoded) == (8, 0)
    with runtime.sessions() as session:
        reasons = set(session.scalars(select(Failure.reason)))
        states = set(session.scalars(select(AssetIndexState.state)))
    assert reasons == {"gave up after 3 attempts"} and states == {"failed"}


def test_points_stored_by_a_dead_delivery_are_adopted(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    ids = queued(runtime, library)
    version = runtime.live_version().id
    index_assets(runtime, version, ids[:3])
    with runtime.sessions() as session:  # the catalog commit "never happened"
        session.execute(update(AssetIndexState).values(state="processing"))
        session.commit()
    outcome = index_assets(runtime, version, ids)
    assert (outcome.reused, outcome.encoded) == (3, 5)
    assert fake_encoder.images_encoded == 8


def test_enqueue_sends_batches_and_keeps_work_when_the_broker_fails(
    runtime: Runtime, library: Path
) -> None:
    ingest(runtime, [library], dispatch=lambda *_: None)  # registers; nothing pending now
    with runtime.sessions() as session:
        session.execute(update(AssetIndexState).values(state="pending"))
        session.commit()

    def broken(_version: int, _ids: list[str]) -> None:
        raise ConnectionError("broker down")

    version_id = runtime.live_version().id
    assert enqueue_pending(runtime.sessions, version_id, broken, batch_size=3) == 8
    with runtime.sessions() as session:
        assert set(session.scalars(select(AssetIndexState.state))) == {"queued"}
