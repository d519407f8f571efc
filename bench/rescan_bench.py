"""Rescan cost per file and watch latency, side by side in one run.

    .venv/bin/python -m bench.rescan_bench [--files 20000] [--watch-samples 5]

A library of N tiny distinct PNGs (8x8, 1,000 a folder) is added and ingested whole with the
tiny model (clipdex-tiny; the model is not what is measured here) on an embedded home. Then
whole ``ingest`` runs with no folder named (every library), each timed per file of the library:
  no-op      nothing changed: scan (stat) and the catalog's comparison alone
  touched    1% of the files rewritten with new bytes: hashed, registered, encoded
  deleted    1% of the files deleted: marked missing, their points removed
And the watch latency: ``LibraryWatcher`` running (the debounce of CLIPDEX_WATCH_DEBOUNCE_MS,
1000 ms by default, and a short one), a new file is written and the clock stops when its point
is in the live index: median and worst of the samples.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from clipdex.catalog import open_ready_runtime
from core.ids import asset_id_for_digest, sha256_of_file
from core.runtime import Runtime
from core.settings import load_settings
from ingest.libraries import add_library
from ingest.run import IngestReport, ingest
from ingest.watch import LibraryWatcher

FILES_PER_FOLDER = 1000
CHANGE_EVERY = 100  # 1%


def tiny_png(path: Path, seed: int) -> None:
    """An 8x8 PNG whose pixels spell ``seed``: distinct bytes for every seed."""
    pixels = bytes((seed >> shift) & 0xFF for shift in (0, 8, 16) for _ in range(1)) * 64
    Image.frombytes("RGB", (8, 8), pixels).save(path, "PNG")


def make_library(root: Path, size: int) -> list[Path]:
    paths = []
    for index in range(size):
        folder = root / f"d{index // FILES_PER_FOLDER:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{index:07d}.png"
        tiny_png(path, index)
        paths.append(path)
    return paths


def timed(runtime: Runtime, size: int) -> tuple[float, IngestReport]:
    started = time.perf_counter()
    report = ingest(runtime, [])
    return (time.perf_counter() - started) / size * 1e6, report


def watch_latency(runtime: Runtime, root: Path, debounce_ms: int, samples: int) -> list[float]:
    """Seconds from a new file's write to its point in the live index, ``samples`` times."""
    watcher = LibraryWatcher(runtime.sessions, lambda paths: ingest(runtime, paths), debounce_ms, 0)
    watcher.start()
    latencies = []
    try:
        time.sleep(max(3.0, debounce_ms / 1000 * 2))  # the first full rescan (a no-op) is done
        for sample in range(samples):
            path = root / f"d{sample:04d}" / f"watched-{debounce_ms}-{sample}.png"
            tiny_png(path, 10_000_000 + debounce_ms * 100 + sample)
            written = time.perf_counter()
            _wait_indexed(runtime, asset_id_for_digest(sha256_of_file(path)), 120)
            latencies.append(time.perf_counter() - written)
            time.sleep(0.5)
    finally:
        watcher.stop()
    return latencies


def _wait_indexed(runtime: Runtime, asset_id: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not runtime.live_index()[1].existing_ids([asset_id]):
        if time.monotonic() > deadline:
            raise TimeoutError("the watched file was not indexed in time")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--watch-samples", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} cores, embedded home (SQLite, Qdrant Edge), clipdex-tiny")
    work = Path(tempfile.mkdtemp(prefix="rescan-bench-", dir=args.dir))
    try:
        root = work / "library"
        files = make_library(root, args.files)
        settings = load_settings(home=work / "home", model="clipdex-tiny", batch_size=256)
        runtime = open_ready_runtime(settings)
        try:
            with runtime.sessions() as session:
                add_library(session, root, [], include_hidden=False)
                session.commit()
            first, report = timed(runtime, args.files)
            assert report.encoded == args.files, report
            noop, report = timed(runtime, args.files)
            assert report.unchanged == args.files, report
            for index, path in enumerate(files[::CHANGE_EVERY]):
                tiny_png(path, 20_000_000 + index)
            touched, report = timed(runtime, args.files)
            changed = len(files[::CHANGE_EVERY])
            assert (report.modified, report.encoded) == (changed, changed), report
            for path in files[CHANGE_EVERY // 2 :: CHANGE_EVERY]:
                path.unlink()
            deleted, report = timed(runtime, args.files)
            assert report.removed == changed, report
            print(
                f"{'files':>7} | {'first ingest':>13} | {'no-op':>9} | {'1% touched':>10} | ",
                end="",
            )
            print(f"{'1% deleted':>10}   (us per file of the library, whole `ingest`)")
            print(
                f"{args.files:7d} | {first:13.1f} | {noop:9.1f} | {touched:10.1f} | {deleted:10.1f}"
            )
            print(f"touched / no-op: {touched / noop:.2f}x; deleted / no-op: {deleted / noop:.2f}x")
            for debounce in (settings.watch_debounce_ms, 200):
                lat = watch_latency(runtime, root, debounce, args.watch_samples)
                print(
                    f"watch latency, debounce {debounce} ms, write -> in the index: median "
                    f"{statistics.median(lat):.2f}s, worst {max(lat):.2f}s ({len(lat)} samples)"
                )
        finally:
            runtime.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
