"""open_clip's eval transform, reproduced with PIL + numpy (no torchvision compiled ops).

The CPU half (resize, crop) runs in decode threads and yields uint8 HWC arrays; the float half
(scale to 0..1, normalize) runs on the encoder's device, where it is cheapest. Together they
equal open_clip's ``Resize -> CenterCrop -> ToTensor -> Normalize`` for the model's own
preprocess config, including torchvision's rounding of sizes and crop offsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from core.images import ImageRejected, RejectKind

_PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True, slots=True)
class PreprocessConfig:
    """The part of open_clip's ``PreprocessCfg`` that evaluation uses."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    @classmethod
    def from_open_clip(cls, cfg: Mapping[str, Any]) -> PreprocessConfig:
        size = cfg["size"]
        pair = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        interpolation = str(cfg.get("interpolation") or "bicubic")
        if interpolation == "random":  # open_clip uses bicubic at inference for 'random'
            interpolation = "bicubic"
        resize_mode = str(cfg.get("resize_mode") or "shortest")
        if interpolation not in _PIL_FILTERS:
            raise ValueError(f"unsupported interpolation {interpolation!r}")
        if resize_mode not in ("shortest", "longest", "squash"):
            raise ValueError(f"unsupported resize_mode {resize_mode!r}")
        return cls(
            size=pair,
            mean=_triple(cfg["mean"]),
            std=_triple(cfg["std"]),
            interpolation=interpolation,
            resize_mode=resize_mode,
            fill_color=int(cfg.get("fill_color") or 0),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "fill_color": self.fill_color,
        }

    @property
    def shortest_side(self) -> int:
        return min(self.size)


def _triple(value: Any) -> tuple[float, float, float]:
    if isinstance(value, int | float):
        return (float(value),) * 3
    first, second, third = (float(v) for v in value)
    return (first, second, third)


# open_clip resizes the short side to the model's size before cropping the centre, so a very
# thin image (20000x1) would need a billion-pixel intermediate. Refuse those instead.
MAX_RESIZED_PIXELS = 64 * 1024 * 1024  # an RGB intermediate of at most ~200 MB


def to_model_input(image: Image.Image, config: PreprocessConfig) -> NDArray[np.uint8]:
    """Resize and crop an RGB image exactly as open_clip would; return uint8 HxWx3.

    Raises :class:`core.images.ImageRejected` for an image too thin to resize in bounded
    memory."""
    resample = _PIL_FILTERS[config.interpolation]
    target_h, target_w = config.size
    if config.resize_mode == "squash":
        image = _resize(image, target_h, target_w, resample)
    elif config.resize_mode == "longest":
        new_h, new_w = _keep_ratio_size(image, config.size, longest=True)
        image = _resize(image, new_h, new_w, resample)
        image = _center_crop_or_pad(image, config.size, config.fill_color)
    else:
        if target_h == target_w:
            new_h, new_w = _shortest_edge_size(image, target_h)
        else:
            new_h, new_w = _keep_ratio_size(image, config.size, longest=False)
            # open_clip builds ResizeKeepRatio here without passing the interpolation.
            resample = Image.Resampling.BICUBIC
        if new_h * new_w > MAX_RESIZED_PIXELS:
            width, height = image.size
            raise ImageRejected(
                "decode",
                f"image is {width}x{height}: too thin to preprocess (resizing its short side to "
                f"{min(config.size)} would need {new_w}x{new_h} pixels)",
                RejectKind.UNSUPPORTED,
            )
        image = _resize(image, new_h, new_w, resample)
        image = _center_crop_or_pad(image, config.size, 0)
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return array


def _shortest_edge_size(image: Image.Image, side: int) -> tuple[int, int]:
    """torchvision ``_compute_resized_output_size`` for a single requested size."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = side, int(side * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return new_h, new_w


def _keep_ratio_size(image: Image.Image, target: tuple[int, int], longest: bool) -> tuple[int, int]:
    """open_clip ``ResizeKeepRatio.get_params`` without the random parts."""
    width, height = image.size
    ratio_h, ratio_w = height / target[0], width / target[1]
    ratio = max(ratio_h, ratio_w) if longest else min(ratio_h, ratio_w)
    # open_clip's own transform fails on a side that rounds to 0 (a 1x128 image fitted into
    # 64x96); one pixel is the nearest size that exists.
    return max(1, round(height / ratio)), max(1, round(width / ratio))


def _resize(image: Image.Image, height: int, width: int, resample: Image.Resampling) -> Image.Image:
    if image.size == (width, height):
        return image
    return image.resize((width, height), resample)


def _center_crop_or_pad(image: Image.Image, size: tuple[int, int], fill: int) -> Image.Image:
    crop_h, crop_w = size
    width, height = image.size
    if crop_w > width or crop_h > height:
        left = (crop_w - width) // 2 if crop_w > width else 0
        top = (crop_h - height) // 2 if crop_h > height else 0
        canvas = Image.new(image.mode, (max(width, crop_w), max(height, crop_h)), (fill,) * 3)
        canvas.paste(image, (left, top))
        image = canvas
        width, height = image.size
        if (width, height) == (crop_w, crop_h):
            return image
    top = round((height - crop_h) / 2.0)
    left = round((width - crop_w) / 2.0)
    return image.crop((left, top, left + crop_w, top + crop_h))
