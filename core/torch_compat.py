"""Import open_clip on a CPU-only torch next to a CUDA build of torchvision.

Why this exists: the only torchvision wheel published for torch 2.13.0 on Linux is a CUDA build.
On the CPU build of torch its compiled extension does not load, so the ops ``torchvision::nms``
and friends are never registered, and ``torchvision/_meta_registrations.py`` (which attaches
fake-tensor kernels to those ops for ``torch.compile``) raises "operator torchvision::nms does
not exist" at import time. open_clip imports ``torchvision.transforms``, so it fails too.

clipdex never calls torchvision's compiled ops (its preprocessing is PIL + numpy, see
``core.preprocess``), and meta kernels only matter for tracing those ops. So when, and only
when, that exact failure happens we forget the half-imported modules, register an empty
``torchvision._meta_registrations`` and import again. With a healthy torchvision nothing changes.
"""

from __future__ import annotations

import sys
import types
from typing import Any

_META_MODULE = "torchvision._meta_registrations"


def _forget_torchvision() -> None:
    for name in list(sys.modules):
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]


def import_torchvision() -> Any:
    """Import torchvision, working around a CUDA-only build on CPU torch (see module doc)."""
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error) or "does not exist" not in str(error):
            raise
        _forget_torchvision()
        sys.modules[_META_MODULE] = types.ModuleType(_META_MODULE)
        import torchvision
    return torchvision


def import_open_clip() -> Any:
    """Return the ``open_clip`` module, importing torchvision safely first."""
    if "open_clip" not in sys.modules:
        import_torchvision()
    import open_clip

    return open_clip
