from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.images import DecodeLimits, ImageRejected, configure_pillow, decode_bytes, decode_file

pytestmark = pytest.mark.unit

LIMITS = DecodeLimits(max_file_bytes=10_000_000, max_image_pixels=89_478_485)


@pytest.fixture(autouse=True)
def _pillow_policy() -> None:
    configure_pillow(LIMITS.max_image_pixels)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (32, 16), (0, 255, 255, 0)), "JPEG")
    decoded = decode_bytes(data, LIMITS)
    assert decoded.image.mode == "RGB"
    red, green, blue = decoded.image.getpixel((5, 5))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(1, 64).repeat(8, axis=0)
    data = encode(Image.fromarray(ramp), "PNG")
    decoded = np.asarray(decode_bytes(data, LIMITS).image)
    assert decoded[0, 0, 0] == 0 and decoded[0, -1, 0] == 255
    assert 100 < decoded[0, 32, 0] < 156  # mid-grey, not saturated white


def test_transparency_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    decoded = decode_bytes(encode(image, "PNG"), LIMITS).image
    assert decoded.getpixel((3, 3)) == (255, 255, 255)


def test_palette_with_transparency_becomes_rgb() -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    data = encode(image, "GIF", transparency=0)
    decoded = decode_bytes(data, LIMITS).image
    assert decoded.mode == "RGB" and decoded.getpixel((0, 0)) == (200, 10, 10)


def test_only_the_first_frame_of_an_animation_is_used() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_bytes(buffer.getvalue(), LIMITS).image
    assert decoded.getpixel((4, 4))[0] > 200  # type: ignore[index]


def test_eps_is_refused_without_invoking_ghostscript() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageRejected, match="not an image in an allowed format"):
        decode_bytes(eps, LIMITS)


def test_byte_cap_rejects_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(encode(Image.new("RGB", (64, 64)), "PNG") + b"\0" * 5000)
    with pytest.raises(ImageRejected) as caught:
        decode_file(big, DecodeLimits(max_file_bytes=1000, max_image_pixels=10**8))
    assert caught.value.stage == "read" and "over the 1000 cap" in caught.value.reason


def test_pixel_ceiling_is_a_bomb() -> None:
    data = encode(Image.new("RGB", (300, 300)), "PNG")
    with pytest.raises(ImageRejected, match="decompression bomb"):
        decode_bytes(data, DecodeLimits(max_file_bytes=10**7, max_image_pixels=50_000))


def test_a_bomb_past_twice_the_ceiling_names_the_configured_ceiling() -> None:
    """Pillow refuses such an image itself, saying twice the ceiling: the reason says the
    ceiling the user configured."""
    from PIL import Image as PillowImage

    before = PillowImage.MAX_IMAGE_PIXELS
    configure_pillow(50_000)
    try:
        data = encode(Image.new("RGB", (400, 400)), "PNG")
        with pytest.raises(ImageRejected) as caught:
            decode_bytes(data, DecodeLimits(max_file_bytes=10**7, max_image_pixels=50_000))
    finally:
        configure_pillow(before or LIMITS.max_image_pixels)
    assert caught.value.reason == (
        "decompression bomb: 160000 pixels exceeds the ceiling of 50000 pixels "
        "(CLIPDEX_MAX_IMAGE_PIXELS)"
    )


def test_truncated_jpeg_is_rejected_as_corrupt() -> None:
    data = encode(Image.new("RGB", (256, 256), (9, 99, 199)), "JPEG")
    with pytest.raises(ImageRejected, match="corrupt image"):
        decode_bytes(data[: len(data) // 2], LIMITS)


def test_exif_date_taken_is_read() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2021:07:04 18:30:00"
    data = encode(Image.new("RGB", (16, 16)), "JPEG", exif=exif)
    decoded = decode_bytes(data, LIMITS)
    assert decoded.taken_at is not None and decoded.taken_at.isoformat() == "2021-07-04T18:30:00"


def test_draft_shrinks_big_jpegs_but_keeps_enough_pixels() -> None:
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (3000, 4000, 3), np.uint8))
    data = encode(photo, "JPEG", quality=80)
    limits = DecodeLimits(max_file_bytes=10**8, max_image_pixels=10**8, draft_min_side=448)
    decoded = decode_bytes(data, limits)
    assert (decoded.width, decoded.height) == (4000, 3000)  # reported size is the file's
    assert min(decoded.image.size) >= 448 and decoded.image.size[0] <= 1000


@pytest.mark.corpus
@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_orientation_tagged_photos_decode_upright(pillow_images: Path, orientation: int) -> None:
    reference = np.asarray(decode_file(pillow_images / "hopper.jpg", LIMITS).image, np.float32)
    tagged_path = pillow_images / f"hopper_orientation_{orientation}.jpg"
    upright = np.asarray(decode_file(tagged_path, LIMITS).image, np.float32)
    raw = np.asarray(Image.open(tagged_path).convert("RGB"), np.float32)
    assert upright.shape == reference.shape
    assert np.abs(upright - reference).mean() < 6  # JPEG noise only
    assert np.abs(raw - reference).mean() > 20  # the stored pixels really are turned


@pytest.mark.corpus
def test_non_square_orientation_swaps_width_and_height(pillow_images: Path) -> None:
    decoded = decode_file(pillow_images / "orientation_rectangle.jpg", LIMITS)
    assert decoded.image.size == (1, 2)


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("name", "displayed"),
    [
        ("orientation_rectangle.jpg", (1, 2)),  # stored 2x1, orientation 8
        ("hopper_orientation_6.webp", (128, 128)),  # square: a quarter turn keeps it
        ("hopper_orientation_3.jpg", (128, 128)),  # a half turn keeps the size
    ],
)
def test_reported_size_is_the_displayed_size(
    pillow_images: Path, name: str, displayed: tuple[int, int]
) -> None:
    decoded = decode_file(pillow_images / name, LIMITS)
    assert (decoded.width, decoded.height) == displayed == decoded.image.size


def test_turned_big_jpeg_reports_the_displayed_full_size_under_draft() -> None:
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 255, (1500, 2000, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(photo, "JPEG", quality=80, exif=exif.tobytes())
    limits = DecodeLimits(max_file_bytes=10**8, max_image_pixels=10**8, draft_min_side=224)
    decoded = decode_bytes(data, limits)
    assert (decoded.width, decoded.height) == (1500, 2000)
    assert decoded.image.size[0] < decoded.image.size[1]


def test_camera_and_description_are_read_from_exif() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon\x00"
    exif[0x0110] = "  Canon EOS 5D Mark IV "
    exif[0x010E] = "Sunset over the harbour"
    data = encode(Image.new("RGB", (8, 8)), "JPEG", exif=exif.tobytes())
    text = decode_bytes(data, LIMITS).exif
    assert (text.camera_make, text.camera_model, text.description) == (
        "Canon", "Canon EOS 5D Mark IV", "Sunset over the harbour",
    )  # fmt: skip
    plain = decode_bytes(encode(Image.new("RGB", (8, 8)), "PNG"), LIMITS).exif
    assert plain.camera_make is plain.camera_model is plain.description is None
