"""Reading manifests: a CSV or JSONL file whose rows each name one image (a local ``path`` or
an http(s) ``url``) with metadata (CSV: every other column; JSONL: every other field, and the
fields of a nested ``metadata`` object).

A row that cannot be used (no path or url, bad JSON, metadata that is not text) becomes a
:class:`BadRow` with its line number and the reason; the other rows go on. A file that is not a
manifest at all (not UTF-8 text, no ``path``/``url`` column) is a :class:`BadManifest`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.images import IMAGE_EXTENSIONS
from core.paths import is_utf8, resolved
from ingest.fetch import is_url
from ingest.metadata import BadMetadata, Metadata, checked_metadata

SOURCE_KEYS = ("path", "url")
SNIFF_BYTES = 64 * 1024


class BadManifest(ValueError):
    """The file is not a usable manifest as a whole (the message says why)."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    source: str  # an absolute local path, or an http(s) URL
    meta: Metadata

    @property
    def is_url(self) -> bool:
        return is_url(self.source)


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


@dataclass(slots=True)
class Manifest:
    path: Path
    rows: list[Row] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)


def sniff(path: Path) -> str | None:
    """``"jsonl"``, ``"csv"`` or ``None``: what the content of ``path`` looks like. An image
    file name or unreadable, binary or non-manifest text is ``None``."""
    try:
        if path.suffix.lower() in IMAGE_EXTENSIONS or not path.is_file():
            return None
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return None
    if b"\0" in head:
        return None
    text = head.decode("utf-8-sig", errors="replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    header = next(csv.reader([first]), [])
    return "csv" if any(name.strip().lower() in SOURCE_KEYS for name in header) else None


def is_manifest(path: Path) -> bool:
    return sniff(path) is not None


def read_manifest(path: Path) -> Manifest:
    """Every row of the manifest at ``path``, good or bad (relative paths are taken from the
    manifest's folder)."""
    kind = sniff(path)
    if kind is None:
        raise BadManifest(
            f"{path} is not a manifest: a CSV file with a 'path' or 'url' column, or JSON lines "
            "each with a 'path' or 'url' field"
        )
    manifest = Manifest(path.resolve())
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = _csv_rows(handle) if kind == "csv" else _json_rows(handle)
            for line, fields in reader:
                _add(manifest, line, fields)
    except UnicodeDecodeError as error:
        raise BadManifest(f"{path} is not UTF-8 text ({error.reason})") from None
    return manifest


def _csv_rows(handle: Any) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(handle)
    header = [name.strip() for name in next(reader, [])]
    lowered = [name.lower() for name in header]
    if not any(name in SOURCE_KEYS for name in lowered):
        raise BadManifest("the CSV header has no 'path' or 'url' column")
    for values in reader:
        line = reader.line_num
        if not any(value.strip() for value in values):
            continue  # a blank line
        if len(values) > len(header):
            yield line, f"{len(values)} fields, the header has {len(header)}"
            continue
        yield (
            line,
            {
                (name.lower() if name.lower() in SOURCE_KEYS else name): value
                for name, value in zip(header, values, strict=False)
                if name and value.strip()
            },
        )


def _json_rows(handle: Any) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            yield line, f"not valid JSON: {error.msg} (column {error.colno})"
            continue
        if not isinstance(value, dict):
            yield line, "each line must be a JSON object"
            continue
        nested = value.pop("metadata", {})
        if not isinstance(nested, dict):
            yield line, "'metadata' must be a JSON object"
            continue
        yield line, {**nested, **value}


# A URL is stored as its image's path: a password in it would be shown with every hit.
CREDENTIALS_REFUSED = (
    "a URL with a user name or password is refused (it would be stored and shown with every "
    "hit); serve the image without one, or download it and list the file"
)


def _add(manifest: Manifest, line: int, fields: dict[str, Any] | str) -> None:
    if isinstance(fields, str):
        manifest.bad.append(BadRow(line, fields))
        return
    url, path = fields.pop("url", None), fields.pop("path", None)
    source = url if url not in (None, "") else path
    if not isinstance(source, str) or not source.strip():
        manifest.bad.append(BadRow(line, "the row has no 'path' or 'url'"))
        return
    try:
        meta = checked_metadata(fields)
    except BadMetadata as error:
        manifest.bad.append(BadRow(line, str(error)))
        return
    source = source.strip()
    if not is_utf8(source):  # the catalog looks it up and the reason quotes it: UTF-8 only
        kind = "URL" if "://" in source else "path"
        manifest.bad.append(BadRow(line, f"not a usable {kind}"))
        return
    if _has_credentials(source):
        manifest.bad.append(BadRow(line, CREDENTIALS_REFUSED))
        return
    if not is_url(source):
        if "://" in source:
            manifest.bad.append(BadRow(line, f"only http and https URLs: {source[:200]}"))
            return
        try:
            source = str(resolved(Path(source), manifest.path.parent))
            source.encode("utf-8")
        except ValueError:  # a NUL, a lone surrogate, a name too long
            manifest.bad.append(BadRow(line, "not a usable path"))
            return
    manifest.rows.append(Row(line, source, meta))


def _has_credentials(source: str) -> bool:
    """A URL of any scheme with ``user[:password]@`` before its host (read by hand: a URL
    ``urlsplit`` cannot parse is still checked)."""
    _, sign, rest = source.partition("://")
    return bool(sign) and "@" in re.split(r"[/?#]", rest, maxsplit=1)[0]
