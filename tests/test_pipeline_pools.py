"""Decode in processes and writes behind the encoder keep what the pipeline promises."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from clipdex.catalog import open_ready_runtime
from core.diskspace import DiskFull
from core.ids import sha256_of_file
from core.runtime import Runtime
from core.settings import Settings, load_settings
from ingest import run as run_module
from ingest.pipeline import Decoded, WorkItem, _decode_executor, prepare
from ingest.run import ingest
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


def _runtime(tmp_path: Path, name: str, **extra: object) -> Runtime:
    settings: Settings = load_settings(
        home=tmp_path / name, model="clipdex-tiny", batch_size=2, decode_workers=2, **extra
    )
    return open_ready_runtime(settings, encoder=FakeEncoder())


@pytest.fixture
def two_runtimes(tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    threads = _runtime(tmp_path, "threads")
    processes = _runtime(tmp_path, "processes", decode_pool="processes")
    yield threads, processes
    threads.close()
    processes.close()


def test_a_process_decodes_the_same_pixels_as_a_thread(runtime: Runtime, library: Path) -> None:
    path = sorted(library.glob("*.jpg"))[0]
    item = WorkItem("a", sha256_of_file(path), str(path))
    limits, config = runtime.decode_limits(), runtime.encoder.preprocess
    with _decode_executor("processes", 1, limits) as pool:
        assert isinstance(pool, ProcessPoolExecutor)
        remote = pool.submit(prepare, item, limits, config).result()
    local = prepare(item, limits, config)
    assert isinstance(remote, Decoded) and isinstance(local, Decoded)
    assert np.array_equal(remote.pixels, local.pixels)
    assert (remote.width, remote.height, remote.format) == (local.width, local.height, "JPEG")


def test_ingest_with_a_process_pool_indexes_what_threads_index(
    two_runtimes: tuple[Runtime, Runtime], library: Path
) -> None:
    (library / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    reports = [ingest(runtime, [library]) for runtime in two_runtimes]
    assert [(r.encoded, r.failed) for r in reports] == [(8, 1), (8, 1)]
    indexes = [runtime.live_index()[1] for runtime in two_runtimes]
    ids = [sorted(index.iter_ids()) for index in indexes]
    assert len(ids[0]) == 8 and ids[0] == ids[1]
    vectors = [{hit.id: hit.vector for hit in index.retrieve(ids[0], True)} for index in indexes]
    for asset_id in ids[0]:
        first, second = vectors[0][asset_id], vectors[1][asset_id]
        assert first is not None and second is not None and np.array_equal(first, second)


def test_a_write_that_fails_stops_the_run_after_the_batches_before_it_are_stored(
    tmp_path: Path, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(tmp_path, "home")
    calls = []

    def full_on_the_second_batch(paths: object, floor: int) -> None:
        calls.append(paths)
        if len(calls) == 3:  # the check before any write, batch 1, then batch 2
            raise DiskFull("disk full (test)")

    monkeypatch.setattr(run_module, "check_free_space", full_on_the_second_batch)
    with pytest.raises(DiskFull):
        ingest(runtime, [library])
    assert runtime.live_index()[1].count() == 2  # batch 1 only; nothing after the failure
    monkeypatch.undo()
    report = ingest(runtime, [library])
    assert report.encoded == 6 and runtime.live_index()[1].count() == 8
    runtime.close()
