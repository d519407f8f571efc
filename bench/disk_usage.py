"""Disk space per 100k images, by part: the catalog (SQLite), the embedded store (Qdrant Edge,
ViT-B-32's 512-d vectors with real payloads) and, for uploads, the blobs (their own bytes).

    .venv/bin/python -m bench.disk_usage [--images 20000]

Real ingest of tiny generated PNGs fills the catalog (the fake encoder keeps it fast; the
catalog does not depend on the model); the store gets N points of 512 random floats with the
payloads ingest builds. Sizes are allocated blocks (``du``), not apparent sizes: the store's
memory maps are sparse files."""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from clipdex.catalog import open_ready_runtime
from core.settings import load_settings
from core.store.base import PointRecord
from core.store.edge import EdgeStore
from ingest.payload import payloads_for
from ingest.run import ingest
from tests.fakes import FakeEncoder

DIM = 512  # ViT-B-32


def allocated(path: Path) -> int:
    """Bytes of disk blocks used under ``path`` (what ``du`` reports)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def make_library(root: Path, count: int) -> int:
    """``count`` distinct tiny PNGs in folders of 500; returns their total bytes."""
    total = 0
    for number in range(count):
        folder = root / f"album-{number // 500:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        colour = (number % 256, (number // 256) % 256, (number // 65536) % 256)
        Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
        (folder / f"IMG_{number:07d}.png").write_bytes(buffer.getvalue())
        total += len(buffer.getvalue())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20_000)
    count = parser.parse_args().images
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        library_bytes = make_library(root / "library", count)
        settings = load_settings(home=root / "home", model="clipdex-tiny", min_free_bytes=0)
        runtime = open_ready_runtime(settings, encoder=FakeEncoder())
        try:
            report = ingest(runtime, [root / "library"])
            assert report.encoded == count, report
            with runtime.sessions() as session:
                ids = list(runtime.live_index()[1].iter_ids())
                payloads = payloads_for(session, ids)
        finally:
            runtime.close()
        catalog = sum(allocated(p) for p in (root / "home").glob("catalog.db*") if p.is_file())

        store = EdgeStore(root / "edge")
        index = store.open_index("vit-b-32", DIM)
        empty = allocated(root / "edge")
        rng = np.random.default_rng(0)
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            vectors = rng.standard_normal((len(chunk), DIM)).astype(np.float32)
            index.upsert(
                [PointRecord(i, v, payloads[i]) for i, v in zip(chunk, vectors, strict=True)]
            )
        store.close()
        points = allocated(root / "edge") - empty

    per = 100_000 / count
    print(f"{count} images, extrapolated to 100k (allocated blocks, {os.uname().machine}):")
    print(f"  catalog (SQLite, WAL):      {catalog * per / 2**20:8.1f} MiB")
    print(
        f"  embedded store (512-d):     {points * per / 2**20:8.1f} MiB"
        f"   (+{empty / 2**20:.0f} MiB fixed per collection: WAL segments, first chunks)"
    )
    print(f"  vectors alone (512 x fp32): {DIM * 4 * 100_000 / 2**20:8.1f} MiB")
    print(
        f"  blobs (uploads only):       the images' own bytes "
        f"(these 8x8 PNGs: {library_bytes * per / 2**20:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
