"""A running server follows an activation without a restart: every response names one index
version, none fails, and each client sees the version switch once."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.runtime import LIVE_ALIAS, Runtime
from core.settings import Settings
from core.store.qdrant import QdrantStore
from ingest.reindex import reindex
from ingest.run import ingest
from search.engine import SearchService, target_for
from tests.fakes import FakeEncoder
from tests.test_reindex import OtherFake, plan_for

Seen = tuple[int, int, str | None, int | None, list[str]]


@pytest.fixture
def shared(settings: Settings, library: Path) -> Iterator[tuple[Runtime, OtherFake]]:
    store = QdrantStore(QdrantClient(":memory:"), "memory")
    runtime = open_ready_runtime(settings, encoder=FakeEncoder(), store=store)
    other = OtherFake()
    runtime._encoders[(other.declared.architecture, other.declared.pretrained)] = other
    ingest(runtime, [library])
    yield runtime, other
    runtime.close()


@pytest.mark.unit
def test_serve_switches_versions_once_with_no_failed_request(
    shared: tuple[Runtime, OtherFake],
) -> None:
    runtime, other = shared
    old = runtime.live_version()
    new = reindex(runtime, plan_for(runtime, other, swap=False)).version
    ready = target_for(runtime, runtime.version(new))
    expected_new = [h.id for h in SearchService(runtime, lambda: ready).text("a red bicycle")]
    app = create_app(runtime.settings, runtime, refresh_interval=0.05)
    seen: list[list[Seen]] = [[] for _ in range(4)]
    stop = threading.Event()

    def client_loop(client: TestClient, out: list[Seen]) -> None:
        while not stop.is_set():
            response = client.get("/v1/search", params={"q": "a red bicycle"})
            body = response.json() if response.status_code == 200 else {}
            index = (body.get("index") or {}).get("id")
            ids = [hit["id"] for hit in body.get("hits", [])]
            out.append(
                (response.status_code, 0, response.headers.get("X-Clipdex-Index"), index, ids)
            )

    with TestClient(app) as client:
        assert client.get("/v1/index").json()["id"] == old.id
        threads = [threading.Thread(target=client_loop, args=(client, s)) for s in seen]
        for thread in threads:
            thread.start()
        # Every client has an answer from the old version before the switch, and one from the
        # new version after it: waited for, not slept for (a loaded machine is slow to start
        # four threads' first searches).
        deadline = time.monotonic() + 60
        while not all(seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        runtime.activate(new)
        while client.get("/v1/index").json()["id"] != new and time.monotonic() < deadline:
            time.sleep(0.05)
        while time.monotonic() < deadline and not all(s[-1][3] == new for s in seen):
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
        assert client.get("/v1/index").json()["id"] == new
        # Rollback is the same command, and the server follows it back.
        runtime.activate(old.id)
        while client.get("/v1/index").json()["id"] != old.id and time.monotonic() < deadline:
            time.sleep(0.05)
        response = client.get("/v1/search", params={"q": "a red bicycle"})
        assert response.headers["X-Clipdex-Index"] == str(old.id)
        assert response.json()["index"]["id"] == old.id

    for responses in seen:
        assert responses and all(status == 200 for status, *_ in responses)
        versions = [index for *_, index, _ in responses]
        assert all(header == str(index) for _, _, header, index, _ in responses)
        switches = sum(1 for a, b in itertools.pairwise(versions) if a != b)
        assert versions[0] == old.id and versions[-1] == new and switches == 1
        assert all(ids == expected_new for *_, index, ids in responses if index == new)


@pytest.mark.unit
@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_activation_on_a_server_moves_the_live_alias_in_one_call(
    settings: Settings, library: Path
) -> None:
    client = QdrantClient(":memory:")
    store = QdrantStore(client, "server")  # local mode has aliases too: the server code path
    runtime = open_ready_runtime(settings, encoder=FakeEncoder(), store=store)
    try:
        ingest(runtime, [library])
        old = runtime.live_version()
        new = reindex(runtime, plan_for(runtime, OtherFake())).version
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        assert aliases == {LIVE_ALIAS: runtime.version(new).collection}
        runtime.activate(old.id)
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        assert aliases == {LIVE_ALIAS: old.collection}
        dropped = runtime.drop(new)
        assert not client.collection_exists(dropped.collection)
        assert client.collection_exists(old.collection)
    finally:
        runtime.close()


@pytest.mark.unit
def test_a_server_that_has_not_searched_yet_follows_a_swap(
    shared: tuple[Runtime, OtherFake],
) -> None:
    """The swap comes before the server's first search: through its own activate endpoint,
    or made by another process (another runtime on the same catalog and store). Searches then
    answer from the new version; they were 503s naming a model mismatch until a restart."""
    runtime, other = shared
    old = runtime.live_version()
    new = reindex(runtime, plan_for(runtime, other, swap=False)).version
    app = create_app(runtime.settings, runtime, refresh_interval=0.05)
    with TestClient(app) as client:
        assert client.post(f"/v1/index/{new}/activate").status_code == 200
        response = client.get("/v1/search", params={"q": "a red bicycle"})
        assert response.status_code == 200, response.text
        assert response.headers["X-Clipdex-Index"] == str(new)

    served = open_ready_runtime(runtime.settings, encoder=FakeEncoder(), store=runtime.store)
    served._encoders[("fake2", "none")] = other
    try:
        app = create_app(served.settings, served, refresh_interval=0.05)
        with TestClient(app) as client:
            runtime.activate(old.id)  # the rollback, by another process
            deadline = time.monotonic() + 30
            while client.get("/v1/index").json()["id"] != old.id:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            response = client.get("/v1/search", params={"q": "a red bicycle"})
            assert response.status_code == 200, response.text
            assert response.headers["X-Clipdex-Index"] == str(old.id)
    finally:
        served.close()


@pytest.mark.unit
def test_a_server_started_on_an_empty_home_follows_its_own_swap(
    settings: Settings, library: Path
) -> None:
    """Started before anything was ingested: its first version came through it, and a swap
    through its endpoint then left every search a 503 until a restart."""
    runtime = open_ready_runtime(settings, encoder=FakeEncoder())
    other = OtherFake()
    runtime._encoders[("fake2", "none")] = other
    token = {"X-API-Key": "local-token"}
    try:
        app = create_app(settings, runtime, refresh_interval=0.05, local_token="local-token")  # noqa: S106
        with TestClient(app) as client:
            job = client.post("/v1/admin/ingest", json={"paths": [str(library)]}, headers=token)
            deadline = time.monotonic() + 60
            while job.json()["state"] == "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
                job = client.get(f"/v1/admin/jobs/{job.json()['id']}", headers=token)
            assert job.json()["state"] == "done", job.text
            new = reindex(runtime, plan_for(runtime, other, swap=False)).version
            activated = client.post(f"/v1/index/{new}/activate", headers=token)
            assert activated.status_code == 200, activated.text
            response = client.get("/v1/search", params={"q": "a red bicycle"}, headers=token)
            assert response.status_code == 200, response.text
            assert response.headers["X-Clipdex-Index"] == str(new)
    finally:
        runtime.close()
