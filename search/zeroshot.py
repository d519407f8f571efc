"""Zero-shot classification arithmetic shared by ``classify`` (one image) and library tagging
(every asset of a folder): checked labels and templates, prompt-ensemble label vectors, and the
softmax over ``logit_scale * cosine``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from search.query import BadQuery

MAX_LABELS = 1000
MAX_TEMPLATES = 32


def checked_labels(labels: Sequence[str]) -> list[str]:
    """Labels stripped; refused when empty, too many, or repeated."""
    stripped = [label.strip() for label in labels]
    if not 1 <= len(stripped) <= MAX_LABELS or not all(stripped):
        raise BadQuery(f"give between 1 and {MAX_LABELS} non-empty labels")
    if len(set(stripped)) != len(stripped):
        raise BadQuery("labels must be distinct")
    return stripped


def checked_templates(templates: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """The templates given, or the configured ones; each needs a ``{}`` slot."""
    chosen = list(templates or default)
    if not 1 <= len(chosen) <= MAX_TEMPLATES or any("{}" not in t for t in chosen):
        raise BadQuery(f"give 1 to {MAX_TEMPLATES} templates, each with a {{}} slot")
    return chosen


def label_vectors(
    encode: Callable[[list[str]], NDArray[np.float32]],
    labels: Sequence[str],
    templates: Sequence[str],
) -> NDArray[np.float32]:
    """One unit vector per label: the mean of its prompts' text vectors (the prompt ensemble),
    normalized. ``encode`` is a text encoder (a model's or its cache's)."""
    prompts = [template.replace("{}", label) for label in labels for template in templates]
    per_prompt = encode(prompts).reshape(len(labels), len(templates), -1)
    vectors = per_prompt.mean(axis=1)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors, dtype=np.float32)


def label_probabilities(cosines: NDArray[np.floating], logit_scale: float) -> NDArray[np.float64]:
    """Softmax over the last axis of ``logit_scale * cosines`` (one row per image)."""
    logits = logit_scale * cosines.astype(np.float64)
    exponents = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(exponents / exponents.sum(axis=-1, keepdims=True), dtype=np.float64)
