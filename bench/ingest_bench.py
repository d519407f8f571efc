"""Ingest throughput, stage by stage, measured side by side in one run.

    .venv/bin/python -m bench.ingest_bench [--model ViT-B-32] [--batch-size 32] [--large 24]
    .venv/bin/python -m bench.ingest_bench --modes [--model clipdex-tiny] [--rounds 2]

Prints, for the same model and batch size: decode+preprocess img/s, encode-only img/s, upsert
points/s and end-to-end `ingest` img/s, on the COCO photos of ../shared/corpus/photos and on
~12 MP JPEGs derived from them (upscaled + noise). Without downloadable weights the model runs
with random weights: the arithmetic, and so the speed, is the same as the pretrained model's.

``--modes`` instead runs end-to-end ingest of the same files four ways, interleaved over rounds:
decode in threads or processes, catalog/store writes inline or on the writer thread.
"""

from __future__ import annotations

import argparse
import functools
import platform
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from clipdex.catalog import open_ready_runtime
from core.encoder import ModelSpec, OpenClipEncoder
from core.ids import sha256_of_file
from core.settings import load_settings
from core.store.base import PointRecord
from core.store.edge import EdgeStore
from ingest import run as run_module
from ingest.pipeline import Decoded, Pipeline, WorkItem, prepare
from ingest.run import ingest

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "corpus" / "photos"


def derive_variants(photos: list[Path], target: Path, variants: int) -> list[Path]:
    """Distinct files at COCO size: each photo re-saved at several JPEG qualities."""
    target.mkdir(parents=True)
    made = []
    for photo in photos:
        with Image.open(photo) as image:
            for quality in range(95, 95 - 5 * variants, -5):
                path = target / f"{photo.stem}-q{quality}.jpg"
                image.save(path, quality=quality)
                made.append(path)
    return made


def derive_large(photos: list[Path], target: Path, count: int) -> list[Path]:
    """~12 MP camera-like JPEGs: upscale a real photo to 4000x3000 and add sensor-like noise."""
    target.mkdir(parents=True)
    rng = np.random.default_rng(0)
    made = []
    for index in range(count):
        with Image.open(photos[index % len(photos)]) as source:
            big = np.asarray(source.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC))
        noisy = np.clip(big + rng.normal(0, 6, big.shape), 0, 255).astype(np.uint8)
        path = target / f"large-{index:03d}.jpg"
        Image.fromarray(noisy).save(path, quality=92)
        made.append(path)
    return made


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:8.1f}/s ({count} in {seconds:.2f}s)"


def measure(name: str, files: list[Path], model: str, batch: int, workers: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="clipdex-bench-"))
    settings = load_settings(
        home=home, model=model, pretrained="random", batch_size=batch, decode_workers=workers
    )
    encoder = OpenClipEncoder(ModelSpec.from_settings(settings))
    runtime = open_ready_runtime(settings, encoder=encoder)
    limits, config = runtime.decode_limits(), encoder.preprocess
    items = [WorkItem(str(p), sha256_of_file(p), str(p)) for p in files]

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        prepared = list(pool.map(lambda item: prepare(item, limits, config), items))
    decode_s = time.perf_counter() - started
    pixels = np.stack([p.pixels for p in prepared if isinstance(p, Decoded)])

    encoder.encode_images(pixels[:batch])  # warm-up: first call pays allocator setup
    started = time.perf_counter()
    vectors = [encoder.encode_images(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    encode_s = time.perf_counter() - started

    store = EdgeStore(home / "upsert-bench")
    index = store.open_index("bench", vectors[0].shape[1])
    flat = np.concatenate(vectors)
    repeats = max(1, 20_000 // len(flat))
    records = [
        PointRecord(f"00000000-0000-0000-0000-{i:012d}", flat[i % len(flat)], {"path": str(i)})
        for i in range(len(flat) * repeats)
    ]
    started = time.perf_counter()
    for i in range(0, len(records), 256):
        index.upsert(records[i : i + 256])
    upsert_s = time.perf_counter() - started
    store.close()

    started = time.perf_counter()
    report = ingest(runtime, [files[0].parent])
    end_to_end_s = time.perf_counter() - started
    runtime.close()
    shutil.rmtree(home, ignore_errors=True)
    assert report.encoded == len(files), report

    encode_rate = len(pixels) / encode_s
    e2e_rate = len(files) / end_to_end_s
    print(f"\n[{name}] {len(files)} images, model {model}, batch {batch}, {workers} decode threads")
    print(f"  decode+preprocess  {rate(len(files), decode_s)}")
    print(f"  encode only        {rate(len(pixels), encode_s)}")
    print(f"  upsert (embedded)  {rate(len(records), upsert_s)}")
    print(f"  end-to-end ingest  {rate(len(files), end_to_end_s)}")
    decode_rate = len(files) / decode_s
    # Decode and encode share the same cores: with perfect overlap and no idle cycles, a run
    # cannot beat doing both stages' CPU work back to back.
    shared_cpu_bound = 1 / (1 / decode_rate + 1 / encode_rate)
    print(f"  end-to-end / encode-only = {e2e_rate / encode_rate:.1%}")
    print(
        f"  shared-CPU bound 1/(1/decode + 1/encode) = {shared_cpu_bound:.1f}/s "
        f"= {shared_cpu_bound / encode_rate:.1%} of encode-only; measured end-to-end reaches "
        f"{e2e_rate / shared_cpu_bound:.0%} of it"
    )
    return {"encode": encode_rate, "e2e": e2e_rate}


MODES = [(pool, behind) for behind in (False, True) for pool in ("threads", "processes")]


def modes(name: str, files: list[Path], args: argparse.Namespace) -> None:
    """End-to-end ingest img/s for each decode pool and write mode, on fresh homes."""
    encoder = OpenClipEncoder(ModelSpec(args.model, "random", device="cpu"))
    encoder.encode_images(np.zeros((1, 224, 224, 3), np.uint8))  # load before timing
    rates: dict[tuple[str, bool], list[float]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for pool, behind in MODES[round_ % 4 :] + MODES[: round_ % 4]:
            home = Path(tempfile.mkdtemp(prefix="clipdex-bench-"))
            settings = load_settings(
                home=home, model=args.model, pretrained="random", batch_size=args.batch_size,
                decode_workers=args.workers, decode_pool=pool,
            )  # fmt: skip
            runtime = open_ready_runtime(settings, encoder=encoder)
            # bench only: the write mode is a Pipeline argument, not a setting
            vars(run_module)["Pipeline"] = functools.partial(Pipeline, write_behind=behind)
            started = time.perf_counter()
            report = ingest(runtime, [files[0].parent])
            rates[(pool, behind)].append(len(files) / (time.perf_counter() - started))
            vars(run_module)["Pipeline"] = Pipeline
            runtime.close()
            shutil.rmtree(home, ignore_errors=True)
            assert report.encoded == len(files), report
    print(
        f"\n[{name}] {len(files)} images, model {args.model}, batch {args.batch_size}, "
        f"{args.workers} decode workers, {args.rounds} interleaved rounds (median img/s)"
    )
    base = statistics.median(rates[("threads", False)])
    for (pool, behind), values in rates.items():
        rate_ = statistics.median(values)
        writes = "writer thread" if behind else "inline writes"
        print(f"  {pool:<9} + {writes:<13} {rate_:8.1f}/s  ({rate_ / base:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", type=int, default=4, help="distinct re-saves per photo")
    parser.add_argument("--large", type=int, default=64, help="how many ~12 MP JPEGs to derive")
    parser.add_argument("--modes", action="store_true", help="threads/processes x write modes")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch  # here, not at module level: decode processes re-import this module

    photos = sorted(PHOTOS.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos at {PHOTOS}")
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, device cpu; model weights random (same FLOPs as pretrained)"
    )
    scratch = Path(tempfile.mkdtemp(prefix="clipdex-bench-data-"))
    try:
        coco = derive_variants(photos, scratch / "coco", args.variants)
        if args.modes:
            modes("COCO photos", coco, args)
            modes("12 MP JPEGs", derive_large(photos, scratch / "large", args.large), args)
            return
        measure("COCO photos", coco, args.model, args.batch_size, args.workers)
        large = derive_large(photos, scratch / "large", args.large)
        measure("12 MP JPEGs", large, args.model, args.batch_size, args.workers)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
