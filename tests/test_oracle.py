"""The API's answers equal an independent computation with open_clip's own model and numpy."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.settings import Settings
from core.torch_compat import import_open_clip
from ingest.run import ingest

pytestmark = [pytest.mark.golden, pytest.mark.corpus]

QUERIES = ["a dog on the beach", "people riding bicycles", "a plate of food"]
LABELS = ["dog", "pizza", "bicycle", "boat"]
TEMPLATES = ["a photo of a {}.", "a blurry photo of a {}.", "art of the {}."]


@pytest.fixture(scope="module")
def reference(random_vit_checkpoint: Path) -> Any:
    open_clip = import_open_clip()
    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=str(random_vit_checkpoint)
    )
    model.eval()
    return model, preprocess, open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def api(
    random_vit_checkpoint: Path, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Path]]:
    root = tmp_path_factory.mktemp("oracle")
    library = root / "photos"
    shutil.copytree(photos, library, ignore=shutil.ignore_patterns("*.tsv"))
    settings = Settings(
        home=root / "home", model="ViT-B-32", pretrained=str(random_vit_checkpoint),
        classify_templates=TEMPLATES,
    )  # fmt: skip
    runtime = open_ready_runtime(settings)
    ingest(runtime, [library])
    with TestClient(create_app(settings, runtime)) as client:
        yield client, library
    runtime.close()


def brute_force(reference: Any, library: Path, query: str) -> list[tuple[str, float]]:
    model, preprocess, tokenizer = reference
    paths = sorted(library.glob("*.jpg"))
    with torch.inference_mode():
        images = model.encode_image(
            torch.stack([preprocess(Image.open(p)) for p in paths]), normalize=True
        ).numpy()
        text = model.encode_text(tokenizer([query]), normalize=True).numpy()[0]
    scores = images @ text
    order = np.argsort(-scores, kind="stable")
    return [(str(paths[i]), float(scores[i])) for i in order]


@pytest.mark.parametrize("query", QUERIES)
def test_ranking_equals_brute_force_numpy(
    api: tuple[TestClient, Path], reference: Any, query: str
) -> None:
    client, library = api
    expected = brute_force(reference, library, query)
    hits = client.get("/v1/search", params={"q": query, "limit": 20}).json()["hits"]
    assert_same_ranking([h["path"] for h in hits], expected)
    assert [h["score"] for h in hits] == pytest.approx([s for _, s in expected[:20]], abs=1e-4)
    page1 = client.get("/v1/search", params={"q": query, "limit": 10}).json()["hits"]
    page2 = client.get("/v1/search", params={"q": query, "limit": 10, "offset": 10}).json()["hits"]
    assert [h["id"] for h in page1 + page2] == [h["id"] for h in hits]


def assert_same_ranking(got: list[str], expected: list[tuple[str, float]]) -> None:
    """Equal rankings up to ties: the i-th hit's true score is the i-th best true score.
    (Random weights put some photos within 1e-5 of each other; batch size moves scores ~1e-6.)"""
    truth = dict(expected)
    for rank, path in enumerate(got):
        assert abs(truth[path] - expected[rank][1]) < 5e-5, (rank, path, expected[rank])


def test_classification_equals_the_formula(api: tuple[TestClient, Path], reference: Any) -> None:
    client, library = api
    model, preprocess, tokenizer = reference
    photo = sorted(library.glob("*.jpg"))[5]
    hit = client.post(
        "/v1/search/image", files={"file": ("q.jpg", photo.read_bytes())}, data={"limit": "1"}
    ).json()["hits"][0]
    answer = client.post("/v1/classify", json={"asset": hit["id"], "labels": LABELS}).json()
    with torch.inference_mode():
        image = model.encode_image(preprocess(Image.open(photo))[None], normalize=True)[0]
        label_vectors = []
        for label in LABELS:
            prompts = [template.format(label) for template in TEMPLATES]
            vectors = model.encode_text(tokenizer(prompts), normalize=True)
            mean = vectors.mean(dim=0)
            label_vectors.append(mean / mean.norm())
        cosine = torch.stack(label_vectors) @ image
        probabilities = torch.softmax(model.logit_scale.exp() * cosine, dim=0)
    got = {row["label"]: row["probability"] for row in answer["labels"]}
    want = dict(zip(LABELS, probabilities.tolist(), strict=True))
    assert got == pytest.approx(want, abs=1e-4)
