"""`clipdex ingest` builds the embedded store's search graph at its end, once enough vectors
are there, and searches answer the same through the graph as before it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.store.edge import EdgeStore
from core.store.edge_files import stored_dim
from core.store.edge_tuning import EdgeTuning
from tests.conftest import cli_env

pytestmark = pytest.mark.tiny_real

THRESHOLD = 100


def clipdex(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Floats in the graph: the tiny model's random-weight vectors of these photos lie closer
    # together than int8 codes can tell apart (tests/test_store_graph.py covers int8 on
    # CLIP-shaped vectors).
    env = cli_env(home, CLIPDEX_GRAPH_THRESHOLD=str(THRESHOLD), CLIPDEX_STORE_QUANTIZATION="none")
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


def _library(folder: Path, photos: Path, variant: int) -> int:
    """The COCO photos, turned (variant 1) or mirrored (2), downscaled: distinct images."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for photo in sorted(photos.glob("*.jpg")):
        with Image.open(photo) as image:
            picture = image.convert("RGB")
            picture.thumbnail((160, 160))
            if variant == 1:
                picture = picture.transpose(Image.Transpose.ROTATE_90)
            elif variant == 2:
                picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            picture.save(folder / f"{photo.stem}-{variant}.png")
            count += 1
    return count


def _due(home: Path) -> list[int]:
    """Vectors due a graph, per collection of the home's embedded store."""
    store = EdgeStore(home / "store", tuning=EdgeTuning(indexing_threshold=THRESHOLD))
    try:
        return [
            store.open_index(c.name, stored_dim(c) or 0).build_due()
            for c in sorted(home.glob("store/*/"))
        ]
    finally:
        store.close()


def test_ingest_builds_the_graph_once_enough_vectors_are_there(
    tmp_path: Path, photos: Path
) -> None:
    home, library = tmp_path / "home", tmp_path / "library"
    first_count = _library(library / "a", photos, variant=0)
    first = clipdex(home, "ingest", str(library), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["encoded"] == first_count
    assert _due(home) == [0]  # below the threshold: a plain segment, searched exactly
    before = clipdex(home, "search", "noise", "--limit", "5", "--json")

    more = _library(library / "b", photos, variant=1) + _library(library / "c", photos, variant=2)
    second = clipdex(home, "ingest", str(library), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["encoded"] == more
    assert first_count < THRESHOLD < first_count + more
    assert _due(home) == [0]  # past the threshold: the build ran at the end of the ingest

    after = clipdex(home, "search", "noise", "--limit", "5", "--json")
    assert after.returncode == 0, after.stderr
    assert len(json.loads(after.stdout)) == 5
    assert json.loads(before.stdout)  # the same query answered before the build

    # Through the graph, every stored image finds itself first (what `similar` relies on),
    # and its neighbours agree with an exact scan.
    store = EdgeStore(home / "store", tuning=EdgeTuning(indexing_threshold=THRESHOLD))
    try:
        (folder,) = sorted(home.glob("store/*/"))
        index = store.open_index(folder.name, 32)  # clipdex-tiny: 32-d
        ids = list(index.iter_ids())
        assert len(ids) == first_count + more
        agree = []
        for hit in index.retrieve(ids[::5], with_vectors=True):
            assert hit.vector is not None
            approximate = index.search(np.asarray(hit.vector, np.float32), 10)
            exact = index.search(np.asarray(hit.vector, np.float32), 10, exact=True)
            assert approximate[0].id == hit.id
            agree.append(len({h.id for h in approximate} & {h.id for h in exact}) / 10)
        assert np.mean(agree) >= 0.9
    finally:
        store.close()
