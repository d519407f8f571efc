"""What the fast decode path (JPEG DCT scaling with Pillow ``draft()``) costs in fidelity and
saves in time, against the exact path (``CLIPDEX_DECODE=exact``), on 12 MP photos.

    .venv/bin/python -m bench.decode_fidelity [--photos 12] [--model ViT-B-32]

The 12 MP photos are derived from the corpus's real COCO photos (upscaled, with noise, saved as
JPEG quality 92), as camera photos are not in the corpus. Vectors come from a random-weight
model (no download). Prints 1 - cos (median, p90, max) and decode+preprocess ms per photo.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from core.encoder import ModelSpec, OpenClipEncoder
from core.images import DecodeLimits, decode_bytes
from core.preprocess import PreprocessConfig, to_model_input
from core.runtime import decode_limits
from core.settings import Settings

CORPUS_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "photos"
LARGE = (4000, 3000)  # 12 MP, a common camera size


def derive_large_photo(source: Path, seed: int, size: tuple[int, int] = LARGE) -> bytes:
    """A camera-size JPEG from a real photo: bicubic upscale plus sensor-like noise."""
    with Image.open(source) as image:
        photo = image.convert("RGB")
    width, height = size if photo.width >= photo.height else size[::-1]
    big = np.asarray(photo.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    noise = np.random.default_rng(seed).normal(0, 4, big.shape).astype(np.float32)
    pixels = np.clip(big + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def limits_for(decode: str, config: PreprocessConfig) -> DecodeLimits:
    return decode_limits(Settings(decode=decode), config)  # type: ignore[arg-type]


def model_input(data: bytes, limits: DecodeLimits, config: PreprocessConfig) -> NDArray[np.uint8]:
    return to_model_input(decode_bytes(data, limits).image, config)


def timed_inputs(
    photos: list[bytes], limits: DecodeLimits, config: PreprocessConfig
) -> tuple[NDArray[np.uint8], list[float]]:
    arrays, times = [], []
    for data in photos:
        start = time.perf_counter()
        arrays.append(model_input(data, limits, config))
        times.append(time.perf_counter() - start)
    return np.stack(arrays), times


def cosine_gaps(first: NDArray[np.float32], second: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.asarray(1.0 - np.sum(first * second, axis=1), np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--corpus", type=Path, default=CORPUS_PHOTOS)
    args = parser.parse_args()
    encoder = OpenClipEncoder(ModelSpec(args.model, "random", device="cpu"))
    config = encoder.preprocess
    sources = sorted(args.corpus.glob("*.jpg"))[: args.photos]
    photos = [derive_large_photo(path, seed) for seed, path in enumerate(sources)]
    exact_limits, fast_limits = limits_for("exact", config), limits_for("fast", config)
    exact_ms: list[float] = []
    fast_ms: list[float] = []
    exact_in, fast_in = [], []
    for data in photos:  # interleaved, so load on the machine hits both paths alike
        pixels, times = timed_inputs([data], exact_limits, config)
        exact_in.append(pixels[0])
        exact_ms += times
        pixels, times = timed_inputs([data], fast_limits, config)
        fast_in.append(pixels[0])
        fast_ms += times
    exact_vectors = encoder.encode_images(np.stack(exact_in))
    fast_vectors = encoder.encode_images(np.stack(fast_in))
    gaps = cosine_gaps(exact_vectors, fast_vectors)
    pixel_gap = np.abs(np.stack(exact_in).astype(np.int16) - np.stack(fast_in)).mean()
    print(f"{len(photos)} photos at {LARGE[0]}x{LARGE[1]}, {args.model} random weights")
    print(
        f"1 - cos fast vs exact: median {np.median(gaps):.2e}  p90 "
        f"{np.percentile(gaps, 90):.2e}  max {gaps.max():.2e}"
    )
    print(f"mean |pixel difference| at the model input: {pixel_gap:.2f} of 255")
    exact_p50, fast_p50 = statistics.median(exact_ms), statistics.median(fast_ms)
    print(
        f"decode + preprocess per photo (p50): exact {exact_p50 * 1000:.0f} ms, fast "
        f"{fast_p50 * 1000:.0f} ms, ratio {exact_p50 / fast_p50:.1f}x"
    )


if __name__ == "__main__":
    main()
