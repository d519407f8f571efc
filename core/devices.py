"""Which GPU each worker pool child encodes on (``clipdex worker --gpus all|0,1``).

The parent never touches CUDA before its children fork: it only parses the list (the GPU count
comes from a spawned process) and each child picks its own device from its pool index. A child
that dies and is replaced gets the same index, so the same GPU.
"""

from __future__ import annotations

from collections.abc import Sequence


class GpuSpecError(ValueError):
    """A ``--gpus`` value this machine cannot honour; the message says why."""


def parse_gpus(spec: str, available: int) -> list[int]:
    """``all`` or comma-separated GPU ids, checked against the ``available`` count."""
    text = spec.strip().lower()
    if available <= 0:
        raise GpuSpecError(f"--gpus {spec!r}: torch sees no CUDA GPU on this machine")
    if text == "all":
        return list(range(available))
    try:
        gpus = [int(part) for part in text.split(",")]
    except ValueError:
        raise GpuSpecError(f"--gpus {spec!r}: give 'all' or GPU ids such as 0,1") from None
    if len(set(gpus)) != len(gpus):
        raise GpuSpecError(f"--gpus {spec!r}: a GPU is named twice")
    missing = [gpu for gpu in gpus if not 0 <= gpu < available]
    if missing:
        raise GpuSpecError(
            f"--gpus {spec!r}: no GPU {missing[0]} here (this machine has {available}: "
            f"0..{available - 1})"
        )
    return gpus


def device_for_child(child_index: int, gpus: Sequence[int]) -> str:
    """The torch device of pool child ``child_index``: children take the GPUs in turn."""
    if not gpus:
        raise GpuSpecError("no GPUs to place pool children on")
    return f"cuda:{gpus[child_index % len(gpus)]}"


def cuda_device_count() -> int:
    """Run in a spawned process (see ``clipdex worker``), never in a parent that forks."""
    import torch

    return int(torch.cuda.device_count())
