"""Stateful property test of the catalog/store invariant (README "How it works": Identity).

Random sequences of file-system changes (add, copy, move, modify, delete, rename a folder),
interrupted runs (the encoder raises part way) and complete ingests. After every complete
ingest: the catalog's indexed asset ids == the store's point ids == the distinct contents on
disk, and each point's payload names exactly the live paths that hold its bytes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from numpy.typing import NDArray
from PIL import Image
from sqlalchemy import select

from clipdex.catalog import open_ready_runtime
from core.catalog.models import AssetIndexState, AssetState
from core.ids import asset_id_for_digest, sha256_of_file
from core.runtime import Runtime
from core.settings import load_settings
from ingest.run import ingest
from tests.conftest import PHOTOS
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit

# A few real photos (distinct bytes), read once; generated PNGs add more distinct content.
SOURCES = sorted(PHOTOS.glob("*.jpg"))[:4]
# Folder names chosen to sit next to each other in path order ("a" < "a b" < "a-b" < "a/").
FOLDERS = ("", "a", "a b", "a-b", "a/c", "ä")
PICK = st.integers(min_value=0, max_value=10_000)
# The embedded store syncs to disk on close; on tmpfs that is free and an example takes ~0.5 s.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class Interrupted(RuntimeError):
    """The simulated crash of an interrupted run."""


class CrashingEncoder(FakeEncoder):
    """The fake encoder, which raises once ``budget`` images have been encoded (when set)."""

    def __init__(self) -> None:
        super().__init__()
        self.budget: int | None = None

    def encode_images(self, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
        if self.budget is not None:
            if len(pixels) > self.budget:
                raise Interrupted(f"encoder crashed with {self.budget} images left")
            self.budget -= len(pixels)
        return super().encode_images(pixels)


class CatalogStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="clipdex-invariants-", dir=SCRATCH)).resolve()
        self.root = self.tmp / "library"
        self.root.mkdir()
        self.encoder = CrashingEncoder()
        self.runtime: Runtime | None = None
        self.names = itertools.count()
        self.mtime_ns = 1_600_000_000 * 10**9  # every write gets its own mtime

    @initialize()
    def open_runtime(self) -> None:
        config = load_settings(
            home=self.tmp / "home", model="clipdex-tiny", batch_size=2, decode_workers=1
        )
        self.runtime = open_ready_runtime(config, encoder=self.encoder)

    def teardown(self) -> None:
        if self.runtime is not None:
            self.runtime.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the library on disk ---------------------------------------------------------------

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def folders(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_dir())

    def fresh_path(self, folder: str, suffix: str) -> Path:
        target = self.root / folder / f"f{next(self.names)}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def stamp(self, path: Path) -> None:
        """A new, distinct mtime: a rewrite with the same size is then never 'unchanged'
        (same size and mtime is, by design, not even hashed)."""
        self.mtime_ns += 10**9
        os.utime(path, ns=(self.mtime_ns, self.mtime_ns))

    def write_content(self, path: Path, source: int, colour: int) -> None:
        if source < len(SOURCES):
            shutil.copyfile(SOURCES[source], path)
        else:
            image = Image.new("RGB", (24, 16), (colour % 256, (colour * 7) % 256, 40))
            image.paste((255 - colour % 256, 90, (colour * 3) % 256), (0, 0, 12, 8))
            image.save(path, format="PNG")
        self.stamp(path)

    # -- rules -----------------------------------------------------------------------------

    @rule(
        folder=st.sampled_from(FOLDERS),
        source=st.integers(0, len(SOURCES)),
        colour=st.integers(0, 5),
    )
    def add_file(self, folder: str, source: int, colour: int) -> None:
        suffix = ".jpg" if source < len(SOURCES) else ".png"
        self.write_content(self.fresh_path(folder, suffix), source, colour)

    @precondition(lambda self: bool(self.files()))
    @rule(pick=PICK, folder=st.sampled_from(FOLDERS))
    def copy_file(self, pick: int, folder: str) -> None:
        files = self.files()
        source = files[pick % len(files)]
        shutil.copy2(source, self.fresh_path(folder, source.suffix))

    @precondition(lambda self: bool(self.files()))
    @rule(pick=PICK, folder=st.sampled_from(FOLDERS))
    def move_file(self, pick: int, folder: str) -> None:
        files = self.files()
        source = files[pick % len(files)]
        source.rename(self.fresh_path(folder, source.suffix))

    @precondition(lambda self: bool(self.files()))
    @rule(pick=PICK, source=st.integers(0, len(SOURCES)), colour=st.integers(6, 11))
    def modify_file(self, pick: int, source: int, colour: int) -> None:
        files = self.files()
        target = files[pick % len(files)]
        before = target.read_bytes()
        self.write_content(target, source, colour)
        if target.read_bytes() == before:  # same photo again: make it a real modification
            self.write_content(target, len(SOURCES), colour + 100)

    @precondition(lambda self: bool(self.files()))
    @rule(pick=PICK)
    def delete_file(self, pick: int) -> None:
        files = self.files()
        files[pick % len(files)].unlink()

    @precondition(lambda self: bool(self.folders()))
    @rule(pick=PICK, name=st.sampled_from(FOLDERS[1:]))
    def rename_folder(self, pick: int, name: str) -> None:
        folders = self.folders()
        folder = folders[pick % len(folders)]
        target = folder.parent / name.replace("/", "_")
        if not target.exists():
            folder.rename(target)

    @rule(budget=st.integers(0, 3))
    def interrupted_ingest(self, budget: int) -> None:
        assert self.runtime is not None
        self.encoder.budget = budget
        try:
            report = ingest(self.runtime, [self.root])
        except Interrupted:
            self.check_after_interruption()
        else:  # fewer images to encode than the budget: the run completed
            assert report.failed == 0, report
            self.check_invariant()
        finally:
            self.encoder.budget = None

    @rule()
    def complete_ingest(self) -> None:
        assert self.runtime is not None
        report = ingest(self.runtime, [self.root])
        assert report.failed == 0, report
        self.check_invariant()

    # -- checks ----------------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        assert self.runtime is not None
        version, _ = self.runtime.live_index()
        with self.runtime.sessions() as session:
            rows = session.execute(
                select(AssetIndexState.asset_id, AssetIndexState.state).where(
                    AssetIndexState.index_version_id == version.id
                )
            ).all()
        return {asset_id: str(state) for asset_id, state in rows}

    def point_ids(self) -> set[str]:
        assert self.runtime is not None
        _, index = self.runtime.live_index()
        return set(index.iter_ids())

    def check_after_interruption(self) -> None:
        """The catalog never says indexed without a stored point (upsert comes first)."""
        states = self.states()
        indexed = {a for a, s in states.items() if s == AssetState.INDEXED}
        pending = {a for a, s in states.items() if s == AssetState.PENDING}
        points = self.point_ids()
        assert indexed <= points, f"indexed without a point: {sorted(indexed - points)}"
        assert points <= indexed | pending, f"unexpected points: {sorted(points - indexed)}"

    def check_invariant(self) -> None:
        assert self.runtime is not None
        on_disk: dict[str, set[str]] = defaultdict(set)
        for path in self.files():
            on_disk[asset_id_for_digest(sha256_of_file(path))].add(str(path))
        states = self.states()
        indexed = {a for a, s in states.items() if s == AssetState.INDEXED}
        not_indexed = {a: s for a, s in states.items() if s != AssetState.INDEXED}
        points = self.point_ids()
        assert indexed == set(on_disk), (
            f"catalog indexed != contents on disk: extra {sorted(indexed - set(on_disk))}, "
            f"missing {sorted(set(on_disk) - indexed)}, other states {not_indexed}"
        )
        assert points == indexed, (
            f"store points != catalog indexed: extra {sorted(points - indexed)}, "
            f"missing {sorted(indexed - points)}"
        )
        _, index = self.runtime.live_index()
        payloads = {hit.id: hit.payload for hit in index.retrieve(sorted(on_disk))}
        for asset_id, paths in on_disk.items():
            payload = payloads[asset_id]
            assert set(payload["paths"]) == paths, (asset_id, payload["paths"], sorted(paths))
            assert payload["path"] == min(paths), (asset_id, payload["path"], sorted(paths))


CatalogStoreMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCatalogStore = CatalogStoreMachine.TestCase
