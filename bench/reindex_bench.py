"""Reindex throughput against a plain ingest, and search latency during a reindex, in one run.

    .venv/bin/python -m bench.reindex_bench [--variants 4] [--threads 3] [--idle-seconds 10]

On the same ~200 images (the COCO photos of ../shared/corpus/photos, each re-saved at several
JPEG qualities) and the same target model (ViT-B-32 with seeded random weights: the arithmetic,
and so the speed, is the pretrained model's):

(a) a plain ``ingest`` with the target model, img/s;
(b) a ``reindex`` from clipdex-tiny to the target model (inline, embedded store), img/s, and
    its ratio to (a);
(c) in-process search latency (``SearchService`` on the live version, several threads, a new
    query text each time so every query is encoded) while idle, then during a second reindex;
    p50/p95 side by side, and the reindex's img/s under that load.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from bench.ingest_bench import PHOTOS, derive_variants
from clipdex.catalog import open_ready_runtime
from core.encoder import ModelSpec, OpenClipEncoder
from core.runtime import Runtime, decode_limits
from core.settings import Settings, load_settings
from ingest.reindex import ReindexPlan, ReindexReport, reindex
from ingest.run import ingest
from search.engine import SearchService

TARGET = "ViT-B-32"


def settings_for(home: Path, model: str, batch: int, workers: int) -> Settings:
    return load_settings(
        home=home, model=model, pretrained="random", batch_size=batch, decode_workers=workers,
        device="cpu",
    )  # fmt: skip


def plain_ingest(library: Path, root: Path, batch: int, workers: int) -> float:
    """(a): img/s of an ingest with the target model on a fresh home."""
    runtime = open_ready_runtime(settings_for(root / "plain", TARGET, batch, workers))
    try:
        runtime.encoder.identity  # noqa: B018  (load the model outside the timing)
        started = time.perf_counter()
        report = ingest(runtime, [library])
        seconds = time.perf_counter() - started
    finally:
        runtime.close()
    return report.encoded / seconds


def plan_for(runtime: Runtime, encoder: OpenClipEncoder) -> ReindexPlan:
    settings = runtime.settings
    return ReindexPlan(
        encoder, decode_limits(settings, encoder.preprocess), settings.batch_size,
        settings.decode_workers, swap=False,
    )  # fmt: skip


def timed_reindex(runtime: Runtime, encoder: OpenClipEncoder) -> tuple[ReindexReport, float]:
    started = time.perf_counter()
    report = reindex(runtime, plan_for(runtime, encoder))
    return report, report.encoded / (time.perf_counter() - started)


class Searchers:
    """``threads`` threads that send text queries until stopped, recording each latency."""

    def __init__(self, service: SearchService, threads: int) -> None:
        self.service = service
        self.count = threads
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        self.latencies = []
        self._threads = [
            threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(self.count)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[float]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.latencies

    def _loop(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            started = time.perf_counter()
            self.service.text(f"a photo of thing {n}-{i} on a sunny day")
            with self._lock:
                self.latencies.append((time.perf_counter() - started) * 1000)


def percentiles(latencies: list[float]) -> str:
    p50, p95 = np.percentile(latencies, [50, 95])
    return f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  ({len(latencies)} queries)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=4, help="JPEG re-saves per photo")
    parser.add_argument("--threads", type=int, default=3, help="search threads")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-workers", type=int, default=2)
    args = parser.parse_args()
    batch, workers = args.batch_size, args.decode_workers

    root = Path(tempfile.mkdtemp(prefix="clipdex-reindex-bench-"))
    files = derive_variants(sorted(PHOTOS.glob("*.jpg")), root / "library", args.variants)
    print(f"{len(files)} images; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads; target {TARGET} (random weights)")  # fmt: skip

    ingest_rate = plain_ingest(root / "library", root, batch, workers)
    print(f"(a) plain ingest, {TARGET}:            {ingest_rate:7.1f} img/s")

    runtime = open_ready_runtime(settings_for(root / "tiny", "clipdex-tiny", batch, workers))
    try:
        ingest(runtime, [root / "library"])
        encoder = OpenClipEncoder(ModelSpec(TARGET, "random", "cpu"))
        encoder.identity  # noqa: B018  (load the model outside the timing)
        first, reindex_rate = timed_reindex(runtime, encoder)
        assert first.indexed == first.points == len(files), first
        print(f"(b) reindex clipdex-tiny -> {TARGET}:  {reindex_rate:7.1f} img/s  "
              f"(reindex / ingest = {reindex_rate / ingest_rate:.2f})")  # fmt: skip

        runtime.drop(first.version)  # the second reindex builds it again, under search load
        searchers = Searchers(SearchService(runtime), args.threads)
        searchers.service.text("warm up")
        searchers.start()
        time.sleep(args.idle_seconds)
        idle = searchers.stop()
        searchers.start()
        second, loaded_rate = timed_reindex(runtime, encoder)
        during = searchers.stop()
        assert second.indexed == len(files), second
    finally:
        runtime.close()
    print(f"(c) search, {args.threads} threads, idle:          {percentiles(idle)}")
    print(f"    search, during the reindex:       {percentiles(during)}")
    print(f"    p95 during / idle = {np.percentile(during, 95) / np.percentile(idle, 95):.2f}; "
          f"reindex under search load {loaded_rate:.1f} img/s")  # fmt: skip


if __name__ == "__main__":
    main()
