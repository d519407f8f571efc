"""Synthetic unit vectors shaped like CLIP embeddings, for store tests and benchmarks.

Uniform random vectors in 512 dimensions have no neighbourhoods at all (every point is about
equally far from every other), which no graph index can search well and no real library looks
like. CLIP embeddings share a strong common direction (pairs of photos have cosine ~0.4) and
group into topics. This generator draws that shape: a shared direction, topic centres in a
subspace with a decaying spectrum, and per-point noise with the same spectrum. The geometry is
fixed; ``seed`` draws different points from it (queries use their own seed)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

DIM = 512
_GEOMETRY_SEED = 1234


def clip_like(count: int, seed: int = 0, dim: int = DIM, topics: int = 0) -> NDArray[np.float32]:
    """``count`` unit vectors; ``topics`` defaults to one per 500 points (at least 50)."""
    shape = np.random.default_rng(_GEOMETRY_SEED)
    topics = topics or max(50, count // 500)
    basis = np.linalg.qr(shape.standard_normal((dim, dim)))[0].astype(np.float32)
    spectrum = (np.arange(1, dim + 1, dtype=np.float32) ** -0.8).astype(np.float32)
    shared = basis[:, 0] * 9.0
    centres = (shape.standard_normal((topics, dim)).astype(np.float32) * spectrum) @ basis.T * 6
    draw = np.random.default_rng(seed)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 65_536):  # in slices: a million points stay a few GB
        n = min(65_536, count - start)
        topic = draw.integers(0, topics, n)
        noise = (draw.standard_normal((n, dim)).astype(np.float32) * spectrum) @ basis.T * 4
        jitter = draw.standard_normal((n, dim)).astype(np.float32) * 0.05
        block = shared + centres[topic] + noise + jitter
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def uniform(count: int, seed: int = 0, dim: int = DIM) -> NDArray[np.float32]:
    """The worst case: no structure at all."""
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.float32)
