"""Encoder precision side by side: fp32 vs int8 (and bf16 for reference) on this CPU, and
fp32/fp16/bf16 on CUDA when torch sees a GPU, in one run.

    .venv/bin/python -m bench.precision_bench [--rounds 7] [--batch 32] [--gpu-batch 256]

Weights are random (no download): the cost of a forward does not depend on them, and fidelity
on random weights is a stand-in (the issue measured cos 0.99982 this way). Images are real COCO
photos from ../shared/corpus/photos through clipdex's own decode and preprocessing. Rounds are
interleaved call by call (the order rotates each round), and the ratio to fp32 is the median of
the ratios within each round, so a busy machine slows both sides of a pair alike. Prints img/s,
texts/s (batches of 1 and 32, every text new), the ratio to fp32, and 1 - cos against CPU fp32
(median and max; min cos is 1 - that max).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from core.encoder import ModelSpec, OpenClipEncoder
from core.images import DecodeLimits, decode_file
from core.preprocess import PreprocessConfig, to_model_input
from core.runtime import decode_limits
from core.settings import Settings

CORPUS_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "photos"
SUBJECTS = ["dog", "red bicycle", "kitchen", "harbour", "skier", "train station", "birthday cake"]
PLACES = ["in the snow", "at night", "on a beach", "in a city street", "under a bridge"]


def machine(device: str | None) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as handle:  # Linux; the fallback is above
        names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    cpu = names[0] if names else cpu
    lines = [
        f"machine: {platform.platform()}, {cpu}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, quantized engine "
        f"{torch.backends.quantized.engine})"
    ]
    if device is not None:
        lines.append(f"gpu: {device}")
    return "\n".join(lines)


def photo_pixels(config: PreprocessConfig, count: int, corpus: Path) -> NDArray[np.uint8]:
    """``count`` model inputs from the corpus photos, decoded the way ingest decodes them
    (photos repeat when ``count`` is larger than the corpus)."""
    paths = sorted(corpus.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no photos in {corpus} (the shared corpus is expected there)")
    limits: DecodeLimits = decode_limits(Settings(), config)
    arrays = [to_model_input(decode_file(path, limits).image, config) for path in paths[:count]]
    return np.stack([arrays[index % len(arrays)] for index in range(count)])


def new_texts(count: int, salt: int) -> list[str]:
    """Texts of ordinary query length, none repeated across calls with different salts."""
    return [
        f"a photo of a {SUBJECTS[(salt + i) % len(SUBJECTS)]} "
        f"{PLACES[(salt * 7 + i) % len(PLACES)]}, number {salt * 1000 + i}"
        for i in range(count)
    ]


def seconds(call: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - start


def cosine_gaps(got: NDArray[np.float32], want: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.asarray(1.0 - np.sum(got.astype(np.float64) * want, axis=1), np.float64)


def fidelity(gaps: NDArray[np.float64]) -> str:
    return f"1-cos med {np.median(gaps):.1e} max {gaps.max():.1e}"


def interleaved(
    encoders: dict[str, OpenClipEncoder],
    work: Callable[[OpenClipEncoder, int], object],
    rounds: int,
    slow_rounds: int,
) -> dict[str, list[float | None]]:
    """Seconds of ``work`` per round and precision. Each round calls every precision once, the
    order rotating; precisions after the first two (the slow references) sit out after
    ``slow_rounds`` rounds (None)."""
    names = list(encoders)
    took: dict[str, list[float | None]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if names.index(name) >= 2 and round_index >= slow_rounds:
                took[name].append(None)
                continue
            salt = 1 + round_index * len(names) + names.index(name)
            took[name].append(seconds(partial(work, encoders[name], salt), _no_sync))
    return took


def report(title: str, unit: str, units: int, took: dict[str, list[float | None]]) -> str:
    """Rate from the median seconds; the ratio to fp32 as the median of the ratios within
    each round (a burst of load elsewhere slows both sides of a pair), and best against best."""
    lines = [title]
    base = [value for value in took["fp32"] if value is not None]
    for name, values in took.items():
        mine = [value for value in values if value is not None]
        pairs = [f / m for f, m in zip(took["fp32"], values, strict=True) if f and m]
        rate = units / statistics.median(mine)
        line = f"  {name:5s} {rate:7.1f} {unit} ({len(mine)} runs)"
        if name != "fp32":
            line += (
                f"  {statistics.median(pairs):4.2f}x fp32 (paired median; best vs best "
                f"{min(base) / min(mine):4.2f}x)"
            )
        lines.append(line)
    return "\n".join(lines)


def run_cpu(args: argparse.Namespace) -> None:
    encoders = {
        name: OpenClipEncoder(ModelSpec(args.model, "random", "cpu", name))
        for name in ("fp32", "int8", "bf16")
    }
    pixels = photo_pixels(encoders["fp32"].preprocess, args.batch, args.corpus)
    fidelity_texts = new_texts(args.batch, 0)
    reference_images = encoders["fp32"].encode_images(pixels)
    reference_texts = encoders["fp32"].encode_texts(fidelity_texts)
    gaps = {}
    for name, encoder in encoders.items():  # also the warm-up
        gaps[name] = (
            cosine_gaps(encoder.encode_images(pixels), reference_images),
            cosine_gaps(encoder.encode_texts(fidelity_texts), reference_texts),
        )
        print(f"loaded {name} ({encoder.quantized_layers} int8 layers)", flush=True)

    def images(encoder: OpenClipEncoder, salt: int) -> None:
        encoder.encode_images(pixels)

    def text_batch(encoder: OpenClipEncoder, salt: int) -> None:
        encoder.encode_texts(new_texts(args.batch, salt))

    def text_one(encoder: OpenClipEncoder, salt: int) -> None:
        encoder.encode_texts(new_texts(1, salt + 500))

    rounds, slow = args.rounds, args.bf16_rounds
    image_s = interleaved(encoders, images, rounds, slow)
    print("image tower done", flush=True)
    batch_s = interleaved(encoders, text_batch, rounds, slow)
    single_s = interleaved(encoders, text_one, rounds * 4, slow * 4)
    print(f"\nCPU, {args.model} random weights, interleaved rounds:")
    print(report(f"image tower, batch of {args.batch} COCO photos:", "img/s", args.batch, image_s))
    print(report(f"text tower, batch of {args.batch} new texts:", "texts/s", args.batch, batch_s))
    print(report("text tower, one new text per call:", "texts/s", 1, single_s))
    print(f"fidelity vs CPU fp32 ({args.batch} photos, {args.batch} texts):")
    for name in list(encoders)[1:]:
        image_gaps, text_gaps = gaps[name]
        print(
            f"  {name:5s} images {fidelity(image_gaps)} (min cos {1 - image_gaps.max():.5f}); "
            f"texts {fidelity(text_gaps)} (min cos {1 - text_gaps.max():.5f})"
        )


def run_gpu(args: argparse.Namespace) -> None:
    import torch

    cpu = OpenClipEncoder(ModelSpec(args.model, "random", "cpu", "fp32"))
    photos = photo_pixels(cpu.preprocess, len(list(args.corpus.glob("*.jpg"))), args.corpus)
    reference = cpu.encode_images(photos)
    pixels = np.stack([photos[index % len(photos)] for index in range(args.gpu_batch)])
    names = ["fp32", "fp16", "bf16"]
    encoders = {
        name: OpenClipEncoder(ModelSpec(args.model, "random", "cuda", name)) for name in names
    }
    rates: dict[str, list[float]] = {name: [] for name in names}
    for encoder in encoders.values():  # warm-up: cuDNN/cuBLAS choices, the caching allocator
        encoder.encode_images(pixels)
    for round_index in range(args.rounds):
        for name in names[round_index % 3 :] + names[: round_index % 3]:
            encoder = encoders[name]
            took = seconds(partial(encoder.encode_images, pixels), torch.cuda.synchronize)
            rates[name].append(args.gpu_batch / took)
    print(f"\nCUDA ({torch.cuda.get_device_name(0)}), batch {args.gpu_batch}, encode only:")
    base = statistics.median(rates["fp32"])
    for name in names:
        rate = statistics.median(rates[name])
        gaps = cosine_gaps(encoders[name].encode_images(photos), reference)
        print(
            f"  {name:5s} {rate:8.0f} img/s ({rate / base:4.2f}x fp32) vs CPU fp32 on "
            f"{len(photos)} photos: {fidelity(gaps)}"
        )


def _no_sync() -> None:
    return None


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32, help="CPU images and texts per batch")
    parser.add_argument("--bf16-rounds", type=int, default=2, help="bf16 (slow) sits out after")
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--corpus", type=Path, default=CORPUS_PHOTOS)
    parser.add_argument("--skip-cpu", action="store_true", help="only the GPU part")
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(machine(gpu), flush=True)
    if not args.skip_cpu:
        run_cpu(args)
    if gpu is not None:
        run_gpu(args)
    else:
        print("\nno CUDA device: the GPU part (fp32/fp16/bf16, batch 256) did not run")


if __name__ == "__main__":
    main()
