"""Where the encoder runs (``CLIPDEX_DEVICE``) and in what precision (``CLIPDEX_PRECISION``).
Neither is part of the index identity: vectors of any device or precision are comparable, within
the bounds stated for each.

- ``fp32``: the default, and the only one whose vectors equal open_clip's reference.
- ``fp16``/``bf16``: the model's forward runs under autocast (meant for CUDA); the pixels are
  still scaled and normalized in float32 before it.
- ``int8``: CPU only, opt-in, never the default. After load, every ``nn.Linear`` of both towers
  is replaced by a dynamically quantized int8 layer (int8 weights, activations quantized per
  batch): in open_clip's ViTs the two MLP layers of each block, 48 in ViT-B-32. The attention
  projections (``nn.MultiheadAttention``'s packed input weight and its ``out_proj``, which torch
  leaves alone) and the final projections stay float32. Measured with
  ``bench/precision_bench.py`` on a shared, busy 2-core AMD EPYC (AVX2, no VNNI), random-weight
  ViT-B-32, paired interleaved calls, two runs: image tower 1.26x fp32 in both (batch of 32
  COCO photos), text tower 1.18-1.35x (batch of 32) and 1.14-1.23x (one text); 1 - cos against
  fp32 at most 1.8e-4 on the photos and 9.7e-4 on texts. Both towers got faster, so both are
  quantized. A CUDA or MPS device is refused with one line rather than silently run in fp32.
"""

from __future__ import annotations

import warnings
from typing import Any

INT8 = "int8"
_AUTOCAST = {"fp16": "float16", "bf16": "bfloat16"}


class ModelUnavailable(RuntimeError):
    """The model or its weights cannot be loaded; the message says what to do."""


def torch_device(name: str, precision: str = "fp32") -> Any:
    """The torch device for CLIPDEX_DEVICE, refused with one clear line if this machine lacks it
    or if CLIPDEX_PRECISION=int8 asks for another device than the CPU (torch has no dynamic
    int8 kernels for CUDA or MPS, and running fp32 instead would hide the mistake)."""
    import torch

    try:
        device = torch.device(_resolve_device(name))
    except (RuntimeError, ValueError) as error:
        raise ModelUnavailable(
            f"CLIPDEX_DEVICE={name!r} is not a torch device ({error}); use auto, cpu, cuda or mps"
        ) from None
    if precision == INT8 and device.type != "cpu":
        picked = "" if name == str(device) else f" (it gives {device} here)"
        raise ModelUnavailable(
            f"CLIPDEX_PRECISION=int8 runs on the CPU only, but CLIPDEX_DEVICE={name!r}{picked}; "
            f"set CLIPDEX_DEVICE=cpu for int8, or CLIPDEX_PRECISION=fp32, fp16 or bf16 on "
            f"{device.type.upper()}"
        )
    mps = getattr(torch.backends, "mps", None)
    missing = (device.type == "cuda" and not torch.cuda.is_available()) or (
        device.type == "mps" and (mps is None or not mps.is_available())
    )
    if missing or (device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count()):
        raise ModelUnavailable(
            f"CLIPDEX_DEVICE={name!r} but torch (version {torch.__version__}) sees no such "
            f"{device.type.upper()} device on this machine; set CLIPDEX_DEVICE=cpu or auto"
        )
    return device


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def autocast_dtype(precision: str) -> Any:
    """The torch dtype to autocast the model's forward to, or None (fp32, int8)."""
    import torch

    name = _AUTOCAST.get(precision)
    return None if name is None else getattr(torch, name)


def quantize_int8(model: Any, model_name: str) -> None:
    """Dynamic int8 quantization of every ``nn.Linear`` of both towers, in place.

    ``torch.ao.quantization.quantize_dynamic`` is deprecated (its successor is torchao's
    ``quantize_``, not a dependency here) but still works in torch 2.13; its deprecation
    warnings are muted here, and a torch without it is refused with one line. open_clip reads a
    block's cast dtype from ``mlp.c_fc.weight``, which a quantized layer turns into a method:
    ``int8_original_dtype`` is open_clip's own hook for int8 layers and answers instead.
    """
    import torch

    quantize = getattr(getattr(torch.ao, "quantization", None), "quantize_dynamic", None)
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if quantize is None or not engines:
        raise ModelUnavailable(
            f"CLIPDEX_PRECISION=int8 needs dynamic quantization, which torch "
            f"{torch.__version__} does not offer here; use CLIPDEX_PRECISION=fp32"
        )
    dtype = next(model.parameters()).dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    for module in model.modules():
        if isinstance(module, DynamicLinear):
            module.int8_original_dtype = dtype
    if count_quantized(model) == 0:
        raise ModelUnavailable(
            f"CLIPDEX_PRECISION=int8: model {model_name!r} has no nn.Linear layers to quantize; "
            "use CLIPDEX_PRECISION=fp32"
        )


def count_quantized(model: Any) -> int:
    """How many layers of ``model`` run in dynamic int8 (0 unless CLIPDEX_PRECISION=int8)."""
    try:
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    except ImportError:
        return 0
    return sum(isinstance(module, DynamicLinear) for module in model.modules())
