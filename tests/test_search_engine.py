"""Query semantics of the in-process API: terms, cutoff, collapse, cache, classification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from clipdex.http import create_app
from core.runtime import Runtime
from ingest.run import ingest
from search.engine import SearchService
from search.postprocess import adaptive_threshold
from search.query import BadQuery, SearchOptions, Term, parse_terms
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


def test_terms_parse_with_signs() -> None:
    assert parse_terms("a dog on the beach +sunset -people") == [
        Term("text", "a dog on the beach", 1.0),
        Term("text", "sunset", 1.0),
        Term("text", "people", -1.0),
    ]
    with pytest.raises(BadQuery, match="positive term"):
        parse_terms("-people -cars")


def test_query_vector_is_the_normalized_weighted_sum(runtime: Runtime) -> None:
    service = SearchService(runtime)
    encoder = runtime.encoder
    vector = service.query_vector([Term("text", "beach", 2.0), Term("text", "people", -0.5)])
    beach, people = encoder.encode_texts(["beach", "people"])
    expected = 2.0 * beach - 0.5 * people
    assert np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-6)
    with pytest.raises(BadQuery, match="cancel out"):
        service.query_vector([Term("text", "x", 1.0), Term("text", "x", -1.0)])
    for tiny in (1e-10, 1e-300):  # one term cannot cancel out, however small its weight
        assert np.allclose(service.query_vector([Term("text", "beach", tiny)]), beach, atol=1e-6)


def test_repeated_query_texts_skip_the_model(
    runtime: Runtime, library: Path, fake_encoder: FakeEncoder
) -> None:
    ingest(runtime, [library])
    service = SearchService(runtime)
    first = service.text("a red bicycle in the snow")
    second = service.text("a red bicycle in the snow")
    assert first == second and fake_encoder.texts_encoded == 1
    assert (service.text_cache.hits, service.text_cache.misses) == (1, 1)


def test_adaptive_threshold_keeps_clear_matches_and_drops_flat_results() -> None:
    clear = [0.9, 0.88, 0.86] + [0.3 - i * 0.001 for i in range(97)]
    threshold = adaptive_threshold(clear)
    assert 0.3 < threshold < 0.86
    flat = [0.31 - i * 0.0001 for i in range(100)]
    assert adaptive_threshold(flat) == float("inf")


def test_cutoff_returns_only_the_matching_pictures(runtime: Runtime, library: Path) -> None:
    for index in range(3):
        Image.new("RGB", (200, 150), (250 - index, 5, 5)).save(library / f"red-{index}.png")
    ingest(runtime, [library])
    service = SearchService(runtime)
    query = library / "red-0.png"
    everything = service.image(query, SearchOptions(limit=50))
    assert len(everything) == 11
    kept = service.image(query, SearchOptions(limit=50, adaptive_cutoff=True))
    assert sorted(Path(h.path or "").name for h in kept) == ["red-0.png", "red-1.png", "red-2.png"]


def test_near_duplicates_collapse_to_one(runtime: Runtime, library: Path) -> None:
    photo = sorted(library.rglob("*.jpg"))[0]
    with Image.open(photo) as image:
        for quality in (60, 75):
            image.save(library / f"resaved-{quality}.jpg", quality=quality)
    ingest(runtime, [library])
    service = SearchService(runtime)
    plain = service.image(photo, SearchOptions(limit=3))
    assert {Path(h.path or "").name for h in plain} == {
        photo.name,
        "resaved-60.jpg",
        "resaved-75.jpg",
    }
    collapsed = service.image(photo, SearchOptions(limit=3, collapse_duplicates=0.99))
    assert collapsed[0].path == str(photo)
    assert not {"resaved-60.jpg", "resaved-75.jpg"} & {Path(h.path or "").name for h in collapsed}
    page2 = service.image(photo, SearchOptions(limit=2, offset=1, collapse_duplicates=0.99))
    assert [h.id for h in page2] == [h.id for h in collapsed[1:3]]


def test_classification_probabilities_follow_the_formula(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    service = SearchService(runtime)
    photo = sorted(library.rglob("*.jpg"))[0]
    labels, templates = ["dog", "cat"], ["a photo of a {}.", "a {} picture"]
    result = service.classify(labels, image=photo, templates=templates)
    encoder = runtime.encoder
    image = service.image(photo, SearchOptions(limit=1))[0]
    image_vector = service.asset_vector(image.id)
    label_vectors = []
    for label in labels:
        mean = encoder.encode_texts([t.format(label) for t in templates]).mean(axis=0)
        label_vectors.append(mean / np.linalg.norm(mean))
    logits = 100.0 * (np.stack(label_vectors) @ image_vector)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    got = {row.label: row.probability for row in result}
    assert got == pytest.approx(dict(zip(labels, expected.tolist(), strict=True)), abs=1e-6)


def test_cors_only_for_configured_origins(runtime: Runtime) -> None:
    allowed = runtime.settings.model_copy(update={"cors_origins": ["https://photos.example"]})
    with TestClient(create_app(allowed, runtime)) as client:
        good = client.get("/healthz", headers={"Origin": "https://photos.example"})
        bad = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert good.headers["access-control-allow-origin"] == "https://photos.example"
    assert "access-control-allow-origin" not in bad.headers
