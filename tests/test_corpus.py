"""Pillow's hostile test images go through a real ingest: each ends indexed or failed with a
reason that matches the manifest's expected behaviour; bombs say so; nothing stops the run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from clipdex.catalog import open_ready_runtime
from core.catalog.models import Asset, AssetIndexState, Failure, Location
from core.encoder import ModelSpec, OpenClipEncoder
from core.images import IMAGE_EXTENSIONS
from core.preprocess import to_model_input
from core.runtime import Runtime
from core.settings import Settings
from ingest.run import ingest

pytestmark = [pytest.mark.corpus, pytest.mark.tiny_real]

BOMBS = {
    "decompression_bomb.gif", "decompression_bomb.ico", "bmp/b/badwidth.bmp",
    "bmp/b/reallybig.bmp", "l2rgb_read.bmp", "oom-8ed3316a4109213ca96fb8a256a0bfefdece1461.icns",
    "png_decompression_dos.png",
}  # fmt: skip
# Files the manifest expects to fail in plain Pillow but that clipdex decodes on purpose.
DECODED_ON_PURPOSE = {"avif/hopper.heif"}  # pillow-heif is installed for iPhone libraries


@pytest.fixture(scope="module")
def outcome(pillow_images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    settings = Settings(home=tmp_path_factory.mktemp("corpus"), model="clipdex-tiny", batch_size=16)
    runtime = open_ready_runtime(settings)
    try:
        report = ingest(runtime, [pillow_images])
        with runtime.sessions() as session:
            query = select(Location.path, AssetIndexState.state).join(
                AssetIndexState, AssetIndexState.asset_id == Location.asset_id
            )
            states = {path: state for path, state in session.execute(query)}
            failures = {f.path: f.reason for f in session.scalars(select(Failure))}
        vectors = _vectors_by_name(runtime, pillow_images)
    finally:
        runtime.close()
    return {"report": report, "states": states, "failures": failures, "vectors": vectors}


def _vectors_by_name(runtime: Runtime, root: Path) -> dict[str, np.ndarray]:
    _, index = runtime.live_index()
    with runtime.sessions() as session:
        rows = [
            (path, asset)
            for path, asset in session.execute(select(Location.path, Asset.id).join(Asset))
        ]
    stored = {hit.id: hit.vector for hit in index.retrieve([a for _, a in rows], with_vectors=True)}
    return {
        str(Path(path).relative_to(root)): stored[asset]
        for path, asset in rows
        if stored.get(asset) is not None
    }


def manifest(root: Path) -> list[dict[str, str]]:
    with (root / "MANIFEST.tsv").open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_every_image_file_ends_indexed_or_failed_with_a_reason(
    outcome: dict[str, object], pillow_images: Path
) -> None:
    states: dict[str, str] = outcome["states"]  # type: ignore[assignment]
    failures: dict[str, str] = outcome["failures"]  # type: ignore[assignment]
    report = outcome["report"]
    images = [p for p in pillow_images.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS]
    assert report.scanned == len(images)  # type: ignore[attr-defined]
    for path in images:
        state = states.get(str(path))
        assert state in ("indexed", "failed"), path
        if state == "failed":
            assert failures.get(str(path)), f"{path} failed without a reason"


def test_outcome_matches_the_manifest(outcome: dict[str, object], pillow_images: Path) -> None:
    states: dict[str, str] = outcome["states"]  # type: ignore[assignment]
    checked = 0
    for row in manifest(pillow_images):
        path = pillow_images / row["file"]
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        expected = row["expected_behaviour"]
        should_fail = expected.startswith(("reject", "bomb"))
        if row["file"] in DECODED_ON_PURPOSE:
            should_fail = False
        if "load() raises OSError" in expected and expected.startswith("open() succeeds"):
            should_fail = True  # opens, then cannot be decoded (ultrahdr.jpg)
        assert (states[str(path)] == "failed") == should_fail, (row["file"], expected)
        checked += 1
    assert checked > 140


def test_every_bomb_says_so(outcome: dict[str, object], pillow_images: Path) -> None:
    failures: dict[str, str] = outcome["failures"]  # type: ignore[assignment]
    for name in BOMBS:
        assert "decompression bomb" in failures[str(pillow_images / name)], name


def test_orientation_tagged_files_are_encoded_upright(
    outcome: dict[str, object], pillow_images: Path
) -> None:
    """A random model scores every picture alike, so compare distances, not a threshold:
    the stored vector must sit far closer to the upright picture than to the raw pixels."""
    vectors: dict[str, np.ndarray] = outcome["vectors"]  # type: ignore[assignment]
    encoder = OpenClipEncoder(ModelSpec("clipdex-tiny", "random"))

    def raw_vector(name: str) -> np.ndarray:
        with Image.open(pillow_images / name) as image:  # no EXIF transpose
            pixels = to_model_input(image.convert("RGB"), encoder.preprocess)
        return encoder.encode_images(pixels[np.newaxis])[0]

    pairs = [(f"hopper_orientation_{n}.jpg", "hopper.jpg") for n in range(2, 9)]
    pairs.append(("hopper_orientation_6.webp", "hopper.webp"))
    for tagged, upright in pairs:
        stored = vectors[tagged]
        to_upright = 1 - float(stored @ vectors[upright])
        to_raw = 1 - float(stored @ raw_vector(tagged))
        assert to_upright < 0.2 * to_raw, (tagged, to_upright, to_raw)
