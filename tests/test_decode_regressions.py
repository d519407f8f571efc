"""Inputs found by the decode fuzzer (bench/decode_fuzz.py) that once escaped the rejection
path: each must now be one recorded failure while the rest of its folder is indexed."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from core.images import DecodeLimits, ImageRejected, decode_bytes
from core.preprocess import PreprocessConfig, to_model_input
from core.runtime import Runtime
from ingest.run import ingest

pytestmark = pytest.mark.unit

LIMITS = DecodeLimits(max_file_bytes=10**8, max_image_pixels=89_478_485, draft_min_side=448)
CONFIG = PreprocessConfig(size=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def broken_avif(pillow_images: Path) -> bytes:
    data = (pillow_images / "avif" / "hopper.avif").read_bytes()
    assert b"pitm" in data
    return data.replace(b"pitm", b"\x00itm", 1)


def thin_png(width: int = 20_000, height: int = 1) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_avif_whose_decoder_raises_runtime_error_is_rejected(pillow_images: Path) -> None:
    with pytest.raises(ImageRejected):
        decode_bytes(broken_avif(pillow_images), LIMITS)


def test_a_very_thin_image_is_rejected_before_a_huge_resize() -> None:
    decoded = decode_bytes(thin_png(), LIMITS)  # 20k pixels decode fine
    with pytest.raises(ImageRejected, match="too thin"):
        to_model_input(decoded.image, CONFIG)
    panorama = decode_bytes(thin_png(4000, 40), LIMITS).image  # 100:1 still goes through
    assert to_model_input(panorama, CONFIG).shape == (224, 224, 3)


def test_the_folder_goes_on_past_both(
    runtime: Runtime, pillow_images: Path, photos: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy2(sorted(photos.glob("*.jpg"))[0], folder / "good.jpg")
    (folder / "bad.avif").write_bytes(broken_avif(pillow_images))
    (folder / "thin.png").write_bytes(thin_png())
    report = ingest(runtime, [folder])
    assert (report.encoded, report.failed) == (1, 2)
    again = ingest(runtime, [folder])
    assert (again.unchanged, again.encoded) == (3, 0)
