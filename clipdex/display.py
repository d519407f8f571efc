"""Text that reaches a terminal: file names, reasons and texts are shown escaped.

A file name may hold any byte but ``/`` and NUL. Printed raw, a newline in a name forges a result
line and an ANSI escape sequence drives the terminal. Every human-readable output of the CLI
passes such values through :func:`shown`; ``--json`` output is exact JSON and never escaped.

Escaped: C0 and C1 control characters and DEL (``\\n``, ``\\t``, ``\\r``, ``\\x1b``, ...), the
Unicode line and paragraph separators and the bidirectional overrides (``\\u2028``, ``\\u202e``,
...), and lone surrogates. A lone surrogate ``\\udcXX`` is how Python decodes the byte ``0xXX`` of
a file name that is not valid UTF-8 (surrogateescape); it is shown as ``\\xXX``, the same form as
``bytes.decode("utf-8", "backslashreplace")``. Backslashes themselves are kept as they are, so an
escaped name is readable, one line, and inert, though not always unambiguous.
"""

from __future__ import annotations

import re

_BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def shown(value: object) -> str:
    """``str(value)`` with every control character, separator, bidi override and lone surrogate
    escaped: safe to print on one terminal line."""
    return _UNSAFE.sub(_escape, str(value))
