from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.encoder import ModelSpec, ModelUnavailable, OpenClipEncoder
from core.model_names import model_problem
from tests.conftest import cli_env

pytestmark = pytest.mark.tiny_real


def test_tiny_model_gives_unit_float32_vectors_and_says_it_is_random() -> None:
    encoder = OpenClipEncoder(ModelSpec("clipdex-tiny", "openai", device="cpu"))
    pixels = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    images = encoder.encode_images(pixels)
    texts = encoder.encode_texts(["a red bicycle in the snow", "a dog"])
    assert images.dtype == np.float32 and images.shape == (3, 32)
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert encoder.identity.random_weights
    assert "RANDOM WEIGHTS" in encoder.identity.label


def test_tiny_model_weights_are_the_same_in_every_process() -> None:
    first = OpenClipEncoder(ModelSpec("clipdex-tiny", "random")).encode_texts(["same"])
    second = OpenClipEncoder(ModelSpec("clipdex-tiny", "random")).encode_texts(["same"])
    assert np.array_equal(first, second)


def test_offline_download_fails_with_one_clear_message(tmp_path: Path) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE at import, so this runs in a fresh process."""
    env = cli_env(tmp_path, CLIPDEX_MODEL="ViT-B-32", CLIPDEX_PRETRAINED="openai")
    result = subprocess.run(
        [sys.executable, "-m", "clipdex", "embed", "--text", "x"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "'ViT-B-32'" in result.stderr and "'openai'" in result.stderr
    assert "CLIPDEX_PRETRAINED=/path/to/" in result.stderr


def test_missing_local_checkpoint_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.bin"
    with pytest.raises(ModelUnavailable, match=r"nope\.bin.*not a file"):
        OpenClipEncoder(ModelSpec("ViT-B-32", str(missing))).encode_texts(["x"])


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ModelUnavailable, match="unknown model architecture"):
        OpenClipEncoder(ModelSpec("ViT-Nope-1", "openai")).encode_texts(["x"])


@pytest.mark.parametrize(
    ("model", "pretrained", "problem"),
    [
        ("clipdex-tiny", None, None),
        ("ViT-B-32", None, None),  # openai, the default tag
        ("ViT-B-32", "LAION2B-S34B-B79K", None),  # open_clip reads tags case- and -/_-blind
        ("ViT-B-32", "random", None),
        ("ViT-B-32", "hf-hub:someone/weights", None),
        ("ViT-Nope-1", "openai", "unknown model architecture 'ViT-Nope-1'"),
        ("ViT-B-32", "laion9000", "has no pretrained weights 'laion9000' (open_clip knows: openai"),
        ("ViT-B-32", "/no/such/weights.bin", "'/no/such/weights.bin' is not a file"),
    ],
)
def test_a_model_that_can_never_load_is_told_before_any_weights_load(
    model: str, pretrained: str | None, problem: str | None
) -> None:
    found = model_problem(model, pretrained)
    assert found == problem if problem is None else problem in str(found)
