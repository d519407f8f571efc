"""Warm HTTP search latency through a real `clipdex serve` process.

    .venv/bin/python -m bench.http_bench [--sizes 10000 100000] [--precisions fp32 int8]

For each index size: synthetic 512-d points in the embedded store (ViT-B-32 dimensions), with
the search graph built as `clipdex ingest` leaves it, then for each precision a server
subprocess with ViT-B-32 (random weights: same compute as pretrained), then p50/p95 of text
search (new query each time), a repeated (cached) query, and image upload search, at
concurrency 1 and 8, all on this machine's loopback. The precisions run one after the other on
the same index, so their figures compare side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from bench.store_bench import synthetic
from clipdex.catalog import open_ready_runtime
from core.encoder import ModelSpec, OpenClipEncoder
from core.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
PHOTO = sorted((REPO.parent / "shared" / "corpus" / "photos").glob("*.jpg"))[0]
WORDS = [
    *("dog", "cat", "beach", "snow", "bicycle", "red", "blue", "boat"),
    *("pizza", "mountain", "city", "night", "people", "car", "tree"),
]


def build_index(home: Path, size: int) -> float:
    """Returns the seconds the graph build took (0 below the threshold: no build)."""
    settings = load_settings(home=home, model="ViT-B-32", pretrained="random")
    runtime = open_ready_runtime(
        settings, encoder=OpenClipEncoder(ModelSpec.from_settings(settings))
    )
    _, index = runtime.live_index()
    points = synthetic(size)
    for start in range(0, size, 512):
        index.upsert(points[start : start + 512])
    started = time.perf_counter()
    if index.build_due():
        index.optimize()  # what the end of `clipdex ingest` does
    seconds = time.perf_counter() - started
    runtime.close()
    return seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(home: Path, port: int, precision: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CLIPDEX_HOME": str(home), "CLIPDEX_MODEL": "ViT-B-32",
           "CLIPDEX_PRETRAINED": "random", "HF_HUB_OFFLINE": "1",
           "CLIPDEX_PRECISION": precision}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "clipdex", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become ready")


def latencies(call: Callable[[int], httpx.Response], count: int, concurrency: int) -> list[float]:
    def timed(i: int) -> float:
        started = time.perf_counter()
        response = call(i)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(timed, range(count)))


def report(label: str, samples: list[float]) -> None:
    p95 = float(np.percentile(samples, 95))
    print(f"  {label:<34} p50 {statistics.median(samples):7.1f} ms   p95 {p95:7.1f} ms")


def bench_size(size: int, scratch: Path, requests: int, precisions: list[str]) -> None:
    home = scratch / f"home-{size}"
    started = time.perf_counter()
    graph = build_index(home, size)
    os.sync()  # the build's writes reach the disk now, not during the first server's figures
    print(f"\n{size:,} points (made in {time.perf_counter() - started:.0f} s, "
          f"graph build {graph:.0f} s)")  # fmt: skip
    for precision in precisions:
        print(f" precision {precision}")
        bench_server(home, size, requests, precision)


def bench_server(home: Path, size: int, requests: int, precision: str) -> None:
    port = free_port()
    server = start_server(home, port, precision)
    photo = PHOTO.read_bytes()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            counter = iter(range(10**9))

            def fresh(_: int) -> httpx.Response:  # a query the text cache has never seen
                n = next(counter)
                words = f"{WORDS[n % 15]} {WORDS[(n // 15) % 15]} number {n} size {size}"
                return client.get("/v1/search", params={"q": words, "limit": 10})

            def cached(_: int) -> httpx.Response:
                return client.get("/v1/search", params={"q": "a dog on the beach", "limit": 10})

            def image(_: int) -> httpx.Response:
                return client.post("/v1/search/image", files={"file": ("q.jpg", photo)})

            latencies(cached, 5, 1)  # warm-up
            latencies(image, 2, 1)
            for concurrency in (1, 8):
                report(f"text search, c={concurrency}", latencies(fresh, requests, concurrency))
                report(
                    f"cached text search, c={concurrency}", latencies(cached, requests, concurrency)
                )
                report(
                    f"image search (upload), c={concurrency}",
                    latencies(image, requests // 2, concurrency),
                )
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--requests", type=int, default=80)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    args = parser.parse_args()
    print("machine: 2-core CPU (no GPU); model ViT-B-32 random weights; embedded store; loopback")
    scratch = Path(tempfile.mkdtemp(prefix="clipdex-http-bench-"))
    try:
        for size in args.sizes:
            bench_size(size, scratch, args.requests, args.precisions)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
