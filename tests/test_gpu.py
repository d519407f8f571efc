"""On a CUDA machine: encoders sit on the GPU they are given, and GPU vectors equal CPU fp32
vectors within stated bounds, for fp32 and for fp16/bf16 autocast.

Every test is marked ``gpu``: conftest skips them where torch sees no CUDA device. The
``clipdex worker --gpus`` mapping itself is tested without a GPU in test_devices.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from core.devices import device_for_child
from core.encoder import ModelSpec, OpenClipEncoder
from core.images import decode_file
from core.preprocess import to_model_input
from core.runtime import decode_limits
from core.settings import Settings

pytestmark = pytest.mark.gpu

# 1 - cos against CPU fp32 on the 51 COCO photos, random-weight ViT-B-32. No GPU had run
# clipdex when these were written: they are to be confirmed (and tightened) on the first GPU
# run, with bench/precision_bench.py printing the measured figures.
MAX_GAP = {"fp32": 1e-4, "bf16": 1e-2, "fp16": 5e-3}
TEXTS = ["a dog on the beach", "two people riding bicycles in the snow", "a bowl of fruit"]
CHUNK = 16  # several batches in a row: each pinned, non-blocking copy must land before use


@pytest.fixture(scope="module")
def cpu_fp32() -> OpenClipEncoder:
    return OpenClipEncoder(ModelSpec("ViT-B-32", "random", "cpu", "fp32"))


@pytest.fixture(scope="module")
def pixels(photos: Path, cpu_fp32: OpenClipEncoder) -> NDArray[np.uint8]:
    config = cpu_fp32.preprocess
    limits = decode_limits(Settings(), config)
    paths = sorted(photos.glob("*.jpg"))
    assert len(paths) >= 50, f"expected the COCO photos in {photos}"
    return np.stack([to_model_input(decode_file(path, limits).image, config) for path in paths])


@pytest.fixture(scope="module")
def reference(
    cpu_fp32: OpenClipEncoder, pixels: NDArray[np.uint8]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    return cpu_fp32.encode_images(pixels), cpu_fp32.encode_texts(TEXTS)


def gaps(got: NDArray[np.float32], want: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.asarray(1.0 - np.sum(got.astype(np.float64) * want, axis=1), np.float64)


def test_each_gpu_encoder_keeps_its_model_on_its_own_gpu() -> None:
    import torch

    gpus = list(range(torch.cuda.device_count()))
    assert gpus, "a gpu-marked test ran without CUDA"
    for child in range(len(gpus)):
        device = device_for_child(child, gpus)
        encoder = OpenClipEncoder(ModelSpec("clipdex-tiny", "random", device, "fp32"))
        images = encoder.encode_images(np.zeros((2, 224, 224, 3), np.uint8))
        texts = encoder.encode_texts(["a dog"])
        assert encoder.parameter_devices == {device}, (device, encoder.parameter_devices)
        for vectors in (images, texts):
            assert vectors.dtype == np.float32
            assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)


def test_auto_device_picks_the_gpu() -> None:
    encoder = OpenClipEncoder(ModelSpec("clipdex-tiny", "random", "auto", "fp32"))
    encoder.encode_texts(["x"])
    assert encoder.parameter_devices == {"cuda:0"}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_gpu_vectors_equal_cpu_fp32_within_the_bound(
    precision: str,
    pixels: NDArray[np.uint8],
    reference: tuple[NDArray[np.float32], NDArray[np.float32]],
) -> None:
    encoder = OpenClipEncoder(ModelSpec("ViT-B-32", "random", "cuda:0", precision))
    want_images, want_texts = reference
    chunks = [pixels[start : start + CHUNK] for start in range(0, len(pixels), CHUNK)]
    images = np.concatenate([encoder.encode_images(chunk) for chunk in chunks])
    texts = encoder.encode_texts(TEXTS)
    assert images.dtype == np.float32 and images.shape == want_images.shape
    image_gaps, text_gaps = gaps(images, want_images), gaps(texts, want_texts)
    bound = MAX_GAP[precision]
    assert image_gaps.max() <= bound, f"{precision}: images 1-cos max {image_gaps.max():.2e}"
    assert text_gaps.max() <= bound, f"{precision}: texts 1-cos max {text_gaps.max():.2e}"
    # Batching must not matter: one batch of all the photos gives the same vectors.
    whole = encoder.encode_images(pixels)
    assert gaps(whole, images).max() <= bound
