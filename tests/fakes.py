"""Deterministic stand-ins at the encoder seam, for unit tests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from core.encoder import DeclaredModel, ModelIdentity
from core.preprocess import PreprocessConfig

FAKE_PREPROCESS = PreprocessConfig(size=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class FakeEncoder:
    """Image vector = normalized 4x4 colour thumbnail (similar pictures score high);
    text vector = a hash-seeded random unit vector. Counts what it encodes."""

    dim = 48

    def __init__(self) -> None:
        self.images_encoded = 0
        self.texts_encoded = 0

    @property
    def declared(self) -> DeclaredModel:
        return DeclaredModel("fake", "none")

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity("fake", "none", "0", FAKE_PREPROCESS.as_dict(), self.dim)

    @property
    def preprocess(self) -> PreprocessConfig:
        return FAKE_PREPROCESS

    @property
    def logit_scale(self) -> float:
        return 100.0

    def encode_images(self, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
        self.images_encoded += len(pixels)
        count = len(pixels)
        blocks = pixels.reshape(count, 4, 56, 4, 56, 3).mean(axis=(2, 4)).reshape(count, -1)
        centred = blocks - blocks.mean(axis=1, keepdims=True) + 1e-3
        return _unit(centred.astype(np.float32))

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.texts_encoded += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        return _unit(np.asarray(rows, dtype=np.float32))


def _unit(array: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.asarray(array / np.maximum(norms, 1e-12), dtype=np.float32)
