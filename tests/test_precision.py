"""CLIPDEX_PRECISION=int8: dynamic int8 linear layers on the CPU, opt-in.

Its vectors stay within the README's stated bound of fp32's on real photos (decoded the way
ingest decodes them) and texts, int8 is really in effect (quantized layers, vectors that differ
from fp32), and asking for it on a GPU is one clear line, never a silent fp32 run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from core.encoder import ModelSpec, ModelUnavailable, OpenClipEncoder
from core.images import decode_file
from core.preprocess import to_model_input
from core.runtime import decode_limits
from core.settings import Settings, load_settings
from tests.conftest import cli_env

pytestmark = pytest.mark.tiny_real

# The README's bound: int8 vs fp32, random-weight ViT-B-32 on 2-core x86 (quantized engine
# x86). Measured min cos 0.99979 (images, COCO photos) and 0.99903 (texts); bounds with margin.
MIN_COS_IMAGES = 0.999
MIN_COS_TEXTS = 0.997
PHOTOS_USED = 16
TEXTS = [
    "a dog on the beach",
    "two people riding bicycles in the snow",
    "a plate of food on a wooden table",
    "a red double-decker bus in a city street",
    "a cat sleeping on a laptop keyboard",
    "an aeroplane on the runway at night",
    "a man surfing a large wave",
    "a kitchen with white cupboards and a window",
]


@pytest.fixture(scope="module")
def encoders() -> tuple[OpenClipEncoder, OpenClipEncoder]:
    """fp32 and int8 encoders of the same seeded random-weight ViT-B-32, on the CPU."""
    return (
        OpenClipEncoder(ModelSpec("ViT-B-32", "random", "cpu", "fp32")),
        OpenClipEncoder(ModelSpec("ViT-B-32", "random", "cpu", "int8")),
    )


@pytest.fixture(scope="module")
def pixels(photos: Path, encoders: tuple[OpenClipEncoder, OpenClipEncoder]) -> NDArray[np.uint8]:
    config = encoders[0].preprocess
    limits = decode_limits(Settings(), config)
    paths = sorted(photos.glob("*.jpg"))[:PHOTOS_USED]
    assert len(paths) == PHOTOS_USED, f"expected {PHOTOS_USED} photos in {photos}"
    return np.stack([to_model_input(decode_file(path, limits).image, config) for path in paths])


def cosines(first: NDArray[np.float32], second: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.asarray(np.sum(first.astype(np.float64) * second, axis=1), np.float64)


def test_int8_is_in_effect(encoders: tuple[OpenClipEncoder, OpenClipEncoder]) -> None:
    fp32, int8 = encoders
    assert fp32.quantized_layers == 0
    # ViT-B-32: two MLP layers in each of 12 image and 12 text blocks.
    assert int8.quantized_layers == 48
    assert int8.precision == "int8"
    assert int8.identity == fp32.identity, "precision must not change the index identity"


def test_int8_image_vectors_stay_within_the_bound(
    encoders: tuple[OpenClipEncoder, OpenClipEncoder], pixels: NDArray[np.uint8]
) -> None:
    fp32, int8 = encoders
    want, got = fp32.encode_images(pixels), int8.encode_images(pixels)
    assert got.dtype == np.float32 and got.shape == want.shape
    cos = cosines(got, want)
    assert cos.min() >= MIN_COS_IMAGES, cos.tolist()
    assert 1 - cos.max() > 1e-6, "int8 vectors equal fp32's: quantization is not in effect"
    # A search with an int8 vector finds the same photo first among the fp32 vectors.
    nearest = np.argmax(got.astype(np.float64) @ want.T.astype(np.float64), axis=1)
    assert nearest.tolist() == list(range(len(pixels)))


def test_int8_text_vectors_stay_within_the_bound(
    encoders: tuple[OpenClipEncoder, OpenClipEncoder],
) -> None:
    fp32, int8 = encoders
    want, got = fp32.encode_texts(TEXTS), int8.encode_texts(TEXTS)
    cos = cosines(got, want)
    assert cos.min() >= MIN_COS_TEXTS, cos.tolist()
    assert 1 - cos.max() > 1e-6, "int8 vectors equal fp32's: quantization is not in effect"
    nearest = np.argmax(got.astype(np.float64) @ want.T.astype(np.float64), axis=1)
    assert nearest.tolist() == list(range(len(TEXTS)))


def test_int8_tiny_model_gives_unit_vectors() -> None:
    encoder = OpenClipEncoder(ModelSpec("clipdex-tiny", "random", "cpu", "int8"))
    pixels = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    vectors = np.concatenate([encoder.encode_images(pixels), encoder.encode_texts(["a dog"])])
    assert encoder.quantized_layers > 0
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_int8_off_the_cpu_is_refused_in_one_line(device: str) -> None:
    """Checked before the device exists, so it reads the same with or without a GPU."""
    encoder = OpenClipEncoder(ModelSpec("clipdex-tiny", "random", device, "int8"))
    with pytest.raises(ModelUnavailable, match="CLIPDEX_PRECISION=int8 runs on the CPU only"):
        encoder.encode_texts(["x"])
    with pytest.raises(ModelUnavailable) as raised:
        encoder.encode_texts(["x"])
    assert "\n" not in str(raised.value) and "CLIPDEX_DEVICE=cpu" in str(raised.value)


def test_int8_with_auto_device_never_runs_on_a_gpu_in_fp32() -> None:
    import torch

    encoder = OpenClipEncoder(ModelSpec("clipdex-tiny", "random", "auto", "int8"))
    accelerated = torch.cuda.is_available() or torch.backends.mps.is_available()
    if accelerated:
        with pytest.raises(ModelUnavailable, match="CLIPDEX_DEVICE='auto' \\(it gives"):
            encoder.encode_texts(["x"])
    else:
        encoder.encode_texts(["x"])
        assert encoder.quantized_layers > 0


def test_precision_setting_accepts_int8_and_refuses_others() -> None:
    assert load_settings(precision="int8").precision == "int8"
    assert load_settings().precision == "fp32", "int8 must never be the default"
    with pytest.raises(ValueError, match="precision"):
        load_settings(precision="int4")


def run_cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=cli_env(home, **extra), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def test_cli_int8_on_cuda_is_one_line(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path / "home", "search", "x", CLIPDEX_DEVICE="cuda", CLIPDEX_PRECISION="int8"
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "clipdex: error: CLIPDEX_PRECISION=int8 runs on the CPU only, but CLIPDEX_DEVICE='cuda'; "
        "set CLIPDEX_DEVICE=cpu for int8, or CLIPDEX_PRECISION=fp32, fp16 or bf16 on CUDA"
    ]


def test_cli_unknown_precision_is_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "home", "status", CLIPDEX_PRECISION="int4")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipdex: error: CLIPDEX_PRECISION: "), lines


def test_cli_embeds_in_int8_on_the_cpu(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path / "home", "embed", "--json", "--text", "a dog",
        CLIPDEX_DEVICE="cpu", CLIPDEX_PRECISION="int8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"vector"' in result.stdout
