"""Registration cost per file, side by side in one run: first ingest and rescans.

    .venv/bin/python -m bench.register_bench [--sizes 10000,100000] [--workers 2] [--repeat 3]

For each size N: N tiny files with distinct bytes (16 random bytes each) in a temporary folder.
A round registers them into a fresh SQLite catalog, in a fresh process (so its peak RSS, VmHWM
reset before each phase where the kernel allows, is its own), timing ``register`` plus its
commit, the scan's stat done before:
  first    every file new: hash, classify, write the assets, states and locations
  no-op    a rescan with every file unchanged: the catalog work alone, nothing hashed
  touched  a rescan after 1% of the files were rewritten (new bytes, new mtime)
--repeat rounds run for every size, the sizes taking turns so that each sees the same stretches
of a shared machine's load; the best time of the rounds is shown, the highest peak.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from core.catalog.db import make_engine, make_sessionmaker
from core.catalog.index_versions import ensure_active_index
from ingest.register import RegisterResult, register
from ingest.scan import FoundFile, ScanTally, scan
from migrations.runner import upgrade_to_head
from tests.fakes import FakeEncoder

FILES_PER_FOLDER = 1000
TOUCH_EVERY = 100  # 1% of the files change before the third phase


@dataclass(frozen=True, slots=True)
class Phase:
    us_per_file: float  # wall clock
    cpu_us_per_file: float  # CPU time of the process: less disturbed by other work on the machine
    base_mb: float  # resident memory before the phase
    peak_mb: float  # resident high-water mark during the phase


@dataclass(frozen=True, slots=True)
class SizeResult:
    size: int
    first: Phase
    noop: Phase
    touched: Phase


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> None:
    """Start the high-water mark again from the current RSS (Linux: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def _rss_mb() -> float:
    return _status_mb("VmRSS") or 0.0


def _peak_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_library(root: Path, size: int) -> None:
    for index in range(size):
        folder = root / f"d{index // FILES_PER_FOLDER:04d}"
        if index % FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"f{index:07d}.jpg").write_bytes(os.urandom(16))


class Catalog:
    """A fresh SQLite catalog with its live index version, and a timer for ``register``."""

    def __init__(self, path: Path, library: Path, workers: int) -> None:
        self.engine = make_engine(f"sqlite:///{path}")
        upgrade_to_head(self.engine)
        self.sessions = make_sessionmaker(self.engine)
        with self.sessions() as session:
            self.version_id = ensure_active_index(session, FakeEncoder().identity).id
        self.library, self.workers = library, workers

    def timed(self, files: list[FoundFile]) -> tuple[Phase, RegisterResult]:
        gc.collect()
        base = _rss_mb()
        _reset_peak()
        started, cpu_started = time.perf_counter(), time.process_time()
        with self.sessions() as session:
            result = register(session, self.version_id, [self.library], files, self.workers)
            session.commit()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        return Phase(wall / len(files) * 1e6, cpu / len(files) * 1e6, base, _peak_mb()), result


def rewrite(found: list[FoundFile]) -> int:
    """New bytes and a later mtime for every TOUCH_EVERY-th file."""
    changed = found[::TOUCH_EVERY]
    for item in changed:
        later = item.mtime_ns + 1_000_000_000
        Path(item.path).write_bytes(os.urandom(16))
        os.utime(item.path, ns=(later, later))
    return len(changed)


def measure_round(library: str, workers: int, catalog_path: str) -> SizeResult:
    """One round on ``library`` with a fresh catalog (see the module docstring)."""
    root = Path(library)
    found = list(scan(root, ScanTally()))
    size = len(found)
    catalog = Catalog(Path(catalog_path), root, workers)
    try:
        first, result = catalog.timed(found)
        assert (result.new, result.failed_read) == (size, []), result.new
        noop, result = catalog.timed(found)
        assert (result.unchanged, len(result.touched)) == (size, 0), result.unchanged
        changed = rewrite(found)
        touched, result = catalog.timed(list(scan(root, ScanTally())))
        assert (result.modified, len(result.orphaned)) == (changed, changed), result.modified
        return SizeResult(size, first, noop, touched)
    finally:
        catalog.engine.dispose()
        Path(catalog_path).unlink()


def best_of(rounds: list[SizeResult]) -> SizeResult:
    def best(phases: list[Phase]) -> Phase:
        wall = min(phase.us_per_file for phase in phases)
        cpu = min(phase.cpu_us_per_file for phase in phases)
        base = min(phase.base_mb for phase in phases)
        return Phase(wall, cpu, base, max(phase.peak_mb for phase in phases))

    return SizeResult(
        rounds[0].size,
        best([r.first for r in rounds]),
        best([r.noop for r in rounds]),
        best([r.touched for r in rounds]),
    )


def run_isolated(library: Path, workers: int) -> SizeResult:
    catalog = library.parent / "catalog.db"
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure_round, str(library), workers, str(catalog)).result()


def _cell(phase: Phase) -> str:
    return f"{phase.us_per_file:8.1f} {phase.cpu_us_per_file:8.1f} {phase.peak_mb:8.0f}"


def report(results: list[SizeResult]) -> None:
    """One line per size, then the ratios the design asks for."""
    heading = "wall cpu us/file, peak MB"
    print(f"{'files':>7} {'base MB':>8} | {'first: ' + heading:>32} | ", end="")
    print(f"{'no-op: ' + heading:>32} | {'1% touched: ' + heading:>36}")
    for r in results:
        cells = f"{_cell(r.first):>32} | {_cell(r.noop):>32} | {_cell(r.touched):>36}"
        print(f"{r.size:7d} {r.first.base_mb:8.0f} | {cells}")
    small, large = results[0], results[-1]
    if len(results) > 1:
        wall = large.first.us_per_file / small.first.us_per_file
        cpu = large.first.cpu_us_per_file / small.first.cpu_us_per_file
        print(
            f"first register per file, {large.size} vs {small.size} files: "
            f"{wall:.2f}x wall, {cpu:.2f}x cpu"
        )
    print(f"no-op rescan at {large.size} files: {large.noop.us_per_file:.1f} us/file wall")
    for r in results:
        grown = (r.first.peak_mb - r.first.base_mb) * 1024 * 1024 / r.size
        print(f"memory at {r.size} files: first register peak {grown:.0f} bytes/file over base")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated file counts")
    parser.add_argument("--workers", type=int, default=2, help="hashing threads")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase, best shown")
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    args = parser.parse_args()
    sizes = sorted(int(value) for value in args.sizes.split(",") if value.strip())
    parent = args.dir or tempfile.gettempdir()
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} cores, SQLite catalog, {args.workers} hashing threads")
    work = Path(tempfile.mkdtemp(prefix="register-bench-", dir=parent))
    try:
        libraries = {size: work / f"{size}" / "library" for size in sizes}
        for size, library in libraries.items():
            make_library(library, size)
        rounds: dict[int, list[SizeResult]] = {size: [] for size in sizes}
        for attempt in range(max(1, args.repeat)):
            for size, library in libraries.items():
                started = time.perf_counter()
                rounds[size].append(run_isolated(library, args.workers))
                load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
                seconds = time.perf_counter() - started
                print(f"  round {attempt + 1}, {size} files: {seconds:.0f}s (load {load})")
        report([best_of(rounds[size]) for size in sizes])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
