"""Paths a user typed, made absolute the way a shell would. ``Path.expanduser`` raises
``RuntimeError`` for ``~name`` when there is no such user (or no home); a shell leaves such a
word as it is, and so does ``expand_user``, so a request naming ``~0`` is an ordinary path that
is refused or not found, never a server error."""

from __future__ import annotations

from pathlib import Path


class UnusablePath(ValueError):
    """A path the operating system cannot take: a NUL byte, a lone surrogate, a symlink loop
    (``Path.resolve`` raises ``RuntimeError`` for that one before Python 3.13)."""


def expand_user(path: Path) -> Path:
    """``~`` and ``~name`` expanded when they name a home; otherwise the path unchanged."""
    try:
        return path.expanduser()
    except RuntimeError:
        return path


def resolved(path: Path, base: Path | None = None) -> Path:
    """``path`` (relative to ``base``, or the working folder) expanded, absolute and resolved;
    ``UnusablePath`` when the operating system cannot take it."""
    if "\0" in str(path):
        raise UnusablePath("a path cannot hold a NUL character")
    full = expand_user(path)
    try:
        return ((base / full) if base is not None else full).resolve()
    except (ValueError, OSError, RuntimeError) as error:  # a lone surrogate, a symlink loop...
        raise UnusablePath(f"not a usable path: {error}") from None


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8. A byte that is not UTF-8 in a file name or a
    shell argument reaches Python as a lone surrogate (and so does a JSON ``"\\udcff"``): the
    catalog stores text, and the store's payloads and every JSON answer refuse such a str."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
