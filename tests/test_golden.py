"""`clipdex embed` must reproduce open_clip's own encode_image(preprocess(img)) and encode_text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.torch_compat import import_open_clip
from tests.conftest import cli_env

pytestmark = pytest.mark.golden

TEXTS = ["a dog on the beach", "two people riding bicycles in the snow"]


def reference_vectors(checkpoint: Path, images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    open_clip = import_open_clip()
    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=str(checkpoint)
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.inference_mode():
        pixels = torch.stack([preprocess(Image.open(p)) for p in images])
        image_vectors = model.encode_image(pixels, normalize=True)
        text_vectors = model.encode_text(tokenizer(TEXTS), normalize=True)
    return image_vectors.numpy(), text_vectors.numpy()


def test_embed_equals_open_clip_reference(
    random_vit_checkpoint: Path, photos: Path, tmp_path: Path
) -> None:
    images = sorted(photos.glob("*.jpg"))[:4]
    command = [sys.executable, "-m", "clipdex", "embed", "--json"]
    for image in images:
        command += ["--image", str(image)]
    for text in TEXTS:
        command += ["--text", text]
    env = cli_env(
        tmp_path / "home", CLIPDEX_MODEL="ViT-B-32", CLIPDEX_PRETRAINED=str(random_vit_checkpoint)
    )
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["input"] for row in rows] == [str(p) for p in images] + TEXTS
    ours = np.asarray([row["vector"] for row in rows], dtype=np.float32)
    want_images, want_texts = reference_vectors(random_vit_checkpoint, images)
    cosine = np.sum(ours * np.concatenate([want_images, want_texts]), axis=1)
    assert np.all(1 - cosine <= 1e-5), (1 - cosine).tolist()
