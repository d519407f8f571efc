"""Help that reads as words, not Python types: the CLI framework labels each value with its
annotation (``<str>``, ``<bool>``, ``<int>``); here a flag gets no label, a path ``PATH``, a
number ``INTEGER`` or ``NUMBER``, a date ``DATE``, a choice its values, and text the
parameter's own name (``--asset ASSET_ID``, argument ``{LABELS}...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

PLAIN_NAMES: dict[type, str] = {Path: "PATH", int: "INTEGER", float: "NUMBER", bool: ""}


def plain_label(param: Any) -> str | None:
    """The label shown after an option or argument in help; None for a flag."""
    if getattr(param, "is_flag", False):
        return None
    descriptor = param.type_descriptor
    if descriptor.is_choice and descriptor.choices:
        return "|".join(str(getattr(c, "value", c)) for c in descriptor.choices)
    if descriptor.is_datetime:
        return "DATE"
    annotation = _element(descriptor.annotation)
    name = PLAIN_NAMES.get(annotation) if isinstance(annotation, type) else None
    if name is None:
        name = str(param.metavar or param.name or "VALUE").upper()
    return name or None


def _element(annotation: Any) -> Any:
    """``list[X]`` and ``X | None`` -> X."""
    while get_origin(annotation) is not None:
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            return annotation
        annotation = inner[0]
    return annotation


def plain_help(command: Any) -> Any:
    """Relabel every parameter of ``command`` and its subcommands; returns ``command``."""
    for param in getattr(command, "params", []):
        if not hasattr(param, "type_descriptor"):
            continue
        label = plain_label(param)
        if param.param_type_name == "argument":
            param.metavar = param.metavar or str(param.name).upper()
            label = None if label == param.metavar else label  # not NAME twice
        param.display_type = lambda ctx, label=label: label
    if hasattr(command, "get_help_option"):
        command.get_help_option = _unlabelled(command.get_help_option)
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command


def _unlabelled(get_help_option: Any) -> Any:
    """``--help`` is a flag too: no label."""

    def help_option(ctx: Any) -> Any:
        option = get_help_option(ctx)
        if option is not None:
            option.display_type = lambda ctx: None
        return option

    return help_option
