"""Safe image decoding: one untrusted file in, one upright RGB picture (or a clear reason) out.

The rules (GUIDE §5): a byte cap before reading, a format allow-list (never EPS/PDF, which hand
the bytes to Ghostscript), decompression-bomb warnings escalated to errors, a pixel ceiling,
the first frame only, EXIF orientation applied, and every exotic mode brought to RGB.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Pillow opener names (JPEG also opens MPO). Everything else, EPS above all, is refused.
ALLOWED_FORMATS: Final = (
    *("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "DIB", "AVIF", "HEIF", "JPEG2000"),
    *("ICO", "ICNS", "PPM", "TGA", "QOI", "PCX", "SGI", "DDS", "PSD"),
)

# Extensions the folder scanner treats as images; content decides the real format.
IMAGE_EXTENSIONS: Final = frozenset(
    {
        *(".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".webp", ".tif", ".tiff"),
        *(".bmp", ".dib", ".avif", ".heic", ".heif", ".hif", ".jp2", ".j2k", ".jpf", ".jpx"),
        *(".ico", ".icns", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi", ".pcx", ".sgi"),
        *(".rgb", ".dds", ".psd", ".mpo"),
    }
)

STAGE_READ: Final = "read"
STAGE_DECODE: Final = "decode"

_WHITE = (255, 255, 255)
_EXIF_IFD: Final = 0x8769
_DATETIME_ORIGINAL: Final = 36867
_DESCRIPTION, _MAKE, _MODEL = 0x010E, 0x010F, 0x0110
EXIF_TEXT_CHARS: Final = 1000  # longest EXIF text kept (a description can be a whole essay)


class RejectKind(StrEnum):
    """Why a file was refused, for callers that act on it (an HTTP status, a retry)."""

    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"
    UNSUPPORTED = "unsupported"
    BOMB = "bomb"
    CORRUPT = "corrupt"


class ImageRejected(Exception):
    """This file cannot become a picture. ``stage`` and ``reason`` go to the failures table."""

    def __init__(self, stage: str, reason: str, kind: RejectKind) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.kind = kind


# How long reading one file may take before it is refused (a stalled network mount).
READ_DEADLINE_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_file_bytes: int
    max_image_pixels: int
    # Shortest side (pixels) that JPEG DCT scaling must keep; 0 disables draft().
    draft_min_side: int = 0
    # Seconds reading one file may take before it is refused (a stalled network mount).
    read_deadline_seconds: float = READ_DEADLINE_SECONDS


@dataclass(frozen=True, slots=True)
class ExifText:
    """The EXIF words a person searches by: camera make and model, image description."""

    camera_make: str | None = None
    camera_model: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An upright RGB picture and what we learned about the file while decoding it.
    ``width`` and ``height`` are the displayed size (EXIF orientation applied), at full
    resolution even when JPEG draft decoding gave a smaller picture."""

    image: Image.Image
    format: str
    width: int
    height: int
    taken_at: datetime | None
    exif: ExifText = ExifText()


_configured = False


def configure_pillow(max_image_pixels: int) -> None:
    """Process-wide Pillow policy. Idempotent; call before decoding in a new process.

    ``warnings.catch_warnings`` is not thread-safe, so the bomb-warning escalation is a global
    filter installed once instead of a per-call context.
    """
    global _configured
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if not _configured:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # Pillow's UserWarnings about odd-but-decodable files ("Corrupt EXIF data", "Tag data
        # larger than file") would flood a bulk run; the outcome per file is what we record.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        import pillow_heif

        pillow_heif.register_heif_opener()
        _configured = True


def _openers() -> tuple[str, ...]:
    """The allowed formats this Pillow can open (naming a missing one raises KeyError)."""
    Image.init()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


_CHUNK: Final = 1024 * 1024


def read_limited(
    path: Path, max_file_bytes: int, deadline_seconds: float = READ_DEADLINE_SECONDS
) -> bytes:
    """Read a whole regular file, refusing one over the byte cap before reading it.

    Anything but a regular file (a FIFO, a device, a socket, a directory) is refused before it
    is opened: opening a FIFO waits for a writer forever. The open itself is non-blocking and
    the opened file is checked again, in case the path was swapped in between. Reading stops
    with a rejection once it has taken longer than ``deadline_seconds``.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _not_regular()
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb", buffering=0) as handle:
            facts = os.fstat(handle.fileno())
            if not stat.S_ISREG(facts.st_mode):
                raise _not_regular()
            if facts.st_size > max_file_bytes:
                raise ImageRejected(
                    STAGE_READ, f"file is {facts.st_size} bytes, over the {max_file_bytes} cap",
                    RejectKind.TOO_LARGE,
                )  # fmt: skip
            data = _read_until(handle, max_file_bytes + 1, deadline_seconds)
    except OSError as error:
        raise ImageRejected(
            STAGE_READ, f"cannot read file: {error.strerror or error}", RejectKind.UNREADABLE
        ) from error
    if len(data) > max_file_bytes:
        raise ImageRejected(
            STAGE_READ, f"file grew past the {max_file_bytes} byte cap", RejectKind.TOO_LARGE
        )
    return data


def _not_regular() -> ImageRejected:
    return ImageRejected(
        STAGE_READ, "not a regular file (a FIFO, device, socket or directory)",
        RejectKind.UNREADABLE,
    )  # fmt: skip


def _read_until(handle: BinaryIO, most: int, deadline_seconds: float) -> bytes:
    """Up to ``most`` bytes, in chunks, giving up once the deadline has passed."""
    deadline = time.monotonic() + deadline_seconds
    chunks: list[bytes] = []
    remaining = most
    while remaining > 0:
        chunk = handle.read(min(_CHUNK, remaining))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
        if time.monotonic() > deadline:
            raise ImageRejected(
                STAGE_READ, f"reading took longer than {deadline_seconds:g} s",
                RejectKind.UNREADABLE,
            )  # fmt: skip
    return b"".join(chunks)


# What Pillow raises on hostile input; anything else is a bug and must surface.
_DECODE_ERRORS = (
    Image.DecompressionBombError, Image.DecompressionBombWarning, ValueError, OSError,
    SyntaxError, EOFError, IndexError, KeyError, TypeError, MemoryError,
    RuntimeError,  # the AVIF plugin's "Failed to decode image" (found by bench/decode_fuzz.py)
)  # fmt: skip


def _check_size(data: bytes, limits: DecodeLimits) -> None:
    if len(data) > limits.max_file_bytes:
        raise ImageRejected(
            STAGE_READ, f"{len(data)} bytes, over the {limits.max_file_bytes} cap",
            RejectKind.TOO_LARGE,
        )  # fmt: skip


def _classify(error: BaseException) -> ImageRejected:
    """One mapping from Pillow's exceptions to a recorded reason, for every entry point."""
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        size = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's limit is twice the ceiling
        said = f"{size.group(1)} pixels" if size else "the image"
        return ImageRejected(
            STAGE_DECODE,
            f"decompression bomb: {said} exceeds the ceiling of {Image.MAX_IMAGE_PIXELS} "
            "pixels (CLIPDEX_MAX_IMAGE_PIXELS)",
            RejectKind.BOMB,
        )
    if isinstance(error, UnidentifiedImageError):
        return ImageRejected(
            STAGE_DECODE, "not an image in an allowed format", RejectKind.UNSUPPORTED
        )
    if isinstance(error, ValueError) and "too large" in str(error):
        # PNG text chunks that expand without bound
        return ImageRejected(STAGE_DECODE, f"decompression bomb: {error}", RejectKind.BOMB)
    if isinstance(error, MemoryError):
        return ImageRejected(STAGE_DECODE, "image needs too much memory to decode", RejectKind.BOMB)
    return ImageRejected(STAGE_DECODE, f"corrupt image: {error}", RejectKind.CORRUPT)


def identify(data: bytes, limits: DecodeLimits) -> str:
    """The format of an image, from its header only (cheap: nothing is decoded)."""
    _check_size(data, limits)
    try:
        with Image.open(io.BytesIO(data), formats=_openers()) as image:
            return image.format or "UNKNOWN"
    except _DECODE_ERRORS as error:
        raise _classify(error) from error


def decode_file(path: Path, limits: DecodeLimits) -> DecodedImage:
    data = read_limited(path, limits.max_file_bytes, limits.read_deadline_seconds)
    return decode_bytes(data, limits)


def decode_bytes(data: bytes, limits: DecodeLimits) -> DecodedImage:
    """Decode untrusted bytes into an upright RGB image, or raise :class:`ImageRejected`."""
    _check_size(data, limits)
    try:
        return _decode(data, limits)
    except ImageRejected:
        raise
    except _DECODE_ERRORS as error:
        raise _classify(error) from error


def _decode(data: bytes, limits: DecodeLimits) -> DecodedImage:
    image = Image.open(io.BytesIO(data), formats=_openers())
    file_format = image.format or "UNKNOWN"
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(
            STAGE_DECODE, f"image has no pixels ({width}x{height})", RejectKind.CORRUPT
        )
    if width * height > limits.max_image_pixels:
        raise ImageRejected(
            STAGE_DECODE,
            f"decompression bomb: {width}x{height} = {width * height} pixels exceeds the "
            f"ceiling of {limits.max_image_pixels}",
            RejectKind.BOMB,
        )
    if file_format in ("JPEG", "MPO") and limits.draft_min_side:
        _apply_draft(image, limits.draft_min_side)
    image.load()  # first frame only: we never seek
    taken_at = _taken_at(image)
    upright = _upright(image)
    if upright.size != image.size:  # turned a quarter: the displayed size is the other way
        width, height = height, width
    rgb = to_rgb(upright)
    return DecodedImage(rgb, file_format, width, height, taken_at, _exif_text(image))


def _apply_draft(image: Image.Image, min_side: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is far larger than needed."""
    width, height = image.size
    scale = min_side / min(width, height)
    if scale >= 0.5:
        return
    image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # corrupt EXIF must not cost the picture; it is only left unrotated
        return image


def _exif_text(image: Image.Image) -> ExifText:
    try:
        exif = image.getexif()
        make, model, description = (exif.get(tag) for tag in (_MAKE, _MODEL, _DESCRIPTION))
    except Exception:  # unreadable EXIF: the text is optional metadata
        return ExifText()
    return ExifText(_clean(make, 128), _clean(model, 128), _clean(description, EXIF_TEXT_CHARS))


def _clean(value: object, most: int) -> str | None:
    """EXIF strings come NUL-padded, space-padded, sometimes as bytes; blank means absent."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    return text[:most] or None


def _taken_at(image: Image.Image) -> datetime | None:
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL)
    except Exception:  # unreadable EXIF: the date is optional metadata
        return None
    if not isinstance(raw, str):
        return None
    try:
        return datetime.strptime(raw.strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def to_rgb(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to 8-bit RGB; transparency is flattened onto white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_rgb(image)
    if mode == "LAB":
        return _lab_to_rgb(image)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float images: scale the value range to 0..255."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = array / 257.0
    else:
        finite = array[np.isfinite(array)]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 0.0
        if image.mode == "I" and low >= 0 and high <= 255:
            scaled = array
        else:
            scaled = (array - low) * (255.0 / (high - low)) if high > low else array * 0
    gray = np.nan_to_num(scaled).clip(0, 255).round().astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _lab_to_rgb(image: Image.Image) -> Image.Image:
    from PIL import ImageCms

    transform = ImageCms.buildTransformFromOpenProfiles(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )
    converted = ImageCms.applyTransform(image, transform)
    assert converted is not None  # applyTransform returns None only when inPlace=True
    return converted
