"""The names of models and of their weights: the built-in tiny config, and whether a model and
a pretrained tag name something open_clip knows, checked before any weights load (a reindex
request with a misspelt model is the caller's mistake, not an outage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.paths import expand_user

TINY_MODEL = "clipdex-tiny"
RANDOM_WEIGHTS = "random"
_CONFIG_DIR = Path(__file__).with_name("model_configs")


def register_builtin_configs(open_clip: Any) -> None:
    if TINY_MODEL not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


def unknown_architecture(open_clip: Any, model: str) -> str | None:
    """Why ``model`` names no architecture, or ``None`` (built-in configs registered first)."""
    register_builtin_configs(open_clip)
    if model in open_clip.list_models() or model.startswith("hf-hub:"):
        return None
    return (
        f"unknown model architecture {model!r}: not one of open_clip.list_models() "
        "(e.g. ViT-B-32, ViT-L-14)"
    )


def names_a_file(pretrained: str) -> bool:
    """A pretrained value read as a checkpoint's path rather than a tag."""
    return bool(Path(pretrained).suffix) or "/" in pretrained


def model_problem(model: str, pretrained: str | None) -> str | None:
    """Why ``model`` with ``pretrained`` (a tag, an ``hf-hub:`` id or a checkpoint's path) can
    never load here, or ``None``. Weights that are merely not downloaded yet are no problem."""
    from core.torch_compat import import_open_clip

    open_clip = import_open_clip()
    problem = unknown_architecture(open_clip, model)
    if problem is not None or model == TINY_MODEL or model.startswith("hf-hub:"):
        return problem
    tag = pretrained or "openai"
    if tag == RANDOM_WEIGHTS or tag.startswith("hf-hub:"):
        return None
    if names_a_file(tag):
        path = expand_user(Path(tag))
        return None if path.is_file() else f"pretrained {str(path)!r} is not a file"
    if open_clip.is_pretrained_cfg(model, tag):  # as open_clip reads it: case, - or _
        return None
    tags = open_clip.list_pretrained_tags_by_model(model)
    known = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "")
    return f"model {model!r} has no pretrained weights {tag!r}" + (
        f" (open_clip knows: {known})" if known else f"; use {RANDOM_WEIGHTS!r} or a checkpoint"
    )
