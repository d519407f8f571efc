"""Queries: one or more weighted terms (text, image bytes, server path or stored asset).

The query vector is the normalized weighted sum of the normalized term vectors, so
``beach +sunset -people`` means "beach, and sunset, and away from people".
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

from core.paths import UnusablePath, is_utf8, resolved
from core.store.base import ORIENTATIONS, SearchFilter
from core.store.keywords import words

TermKind = Literal["text", "image", "path", "asset"]
# vector: CLIP similarity. keyword: words of names, folders, metadata, tags and EXIF text.
# hybrid: both, fused by weighted reciprocal rank fusion.
Mode = Literal["vector", "keyword", "hybrid"]
# relevance, or date taken (oldest / newest first) within the relevant set
Sort = Literal["relevance", "taken_at", "-taken_at"]
MODES: tuple[str, ...] = get_args(Mode)
SORTS: tuple[str, ...] = get_args(Sort)
MAX_TERMS = 16

# The bounds of a query, in one place: the engine checks them, the HTTP schemas and routes
# declare them (so they show in the OpenAPI schema) and the client never needs them.
MAX_OFFSET = 100_000  # deep paging is a scan; past this, narrow the query instead
MAX_QUERY_CHARS = 1000  # a query text, or one text term
MAX_PATH_CHARS = 4096  # a folder filter or a server-side path term
MAX_FORMATS = 20
MAX_FORMAT_CHARS = 16
MIN_SCORE_FLOOR, MIN_SCORE_CEILING = -1.0, 1.0  # min_score is a cosine in [floor, ceiling]
# collapse_duplicates is a cosine in (floor, ceiling]: at 0 or below all hits would be one
COLLAPSE_FLOOR, COLLAPSE_CEILING = 0.0, 1.0
MAX_METADATA = 16  # key=value pairs in one filter
MAX_META_VALUE_CHARS = 200
MAX_CAMERA_CHARS = 128
META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # no dots: a key names one field of ``meta``
META_KEY_RULE = "1 to 64 letters, digits, _ or -"


class BadQuery(ValueError):
    """The caller asked for something invalid; the message says what, never the input (an
    HTTP 422 does not echo it). ``detailed`` adds what was given, for the CLI, whose user typed
    it and wants to see how it was read (``nan``)."""

    def __init__(self, message: str, got: object = None) -> None:
        super().__init__(message)
        self.got = got

    @property
    def detailed(self) -> str:
        return str(self) if self.got is None else f"{self}, got {self.got}"


@dataclass(frozen=True, slots=True)
class Term:
    kind: TermKind
    value: str | bytes
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.weight == 0 or self.weight != self.weight or abs(self.weight) > 100:
            raise BadQuery("term weight must be non-zero and within ±100", self.weight)
        if self.kind == "text" and not str(self.value).strip():
            raise BadQuery("a text term is empty")


DEFAULT_LIMIT = 10  # hits a query returns when it names no limit, capped at the maximum


def default_limit(max_limit: int) -> int:
    """The limit of a query that names none: 10, or the configured maximum if that is less."""
    return min(DEFAULT_LIMIT, max_limit)


@dataclass(frozen=True, slots=True)
class SearchOptions:
    limit: int | None = None  # None: DEFAULT_LIMIT, or the configured maximum if that is less
    offset: int = 0
    filters: SearchFilter = field(default_factory=SearchFilter)
    min_score: float | None = None
    adaptive_cutoff: bool = False
    collapse_duplicates: float | None = None  # cosine above which two hits count as one
    mode: Mode = "vector"
    keyword_weight: float = 0.5  # hybrid: the keyword side's share of the fused score, 0..1
    sort: Sort = "relevance"


def page_size(options: SearchOptions) -> int:
    """The limit of options that passed ``checked_options`` (which fills one left unset)."""
    if options.limit is None:
        raise ValueError("SearchOptions.limit is unset: pass the options to checked_options")
    return options.limit


def check_page(limit: int, offset: int, max_limit: int) -> None:
    if not 1 <= limit <= max_limit:
        raise BadQuery(f"limit must be between 1 and {max_limit}", limit)
    if not 0 <= offset <= MAX_OFFSET:
        raise BadQuery(f"offset must be between 0 and {MAX_OFFSET}", offset)


def checked_options(options: SearchOptions, max_limit: int) -> SearchOptions:
    """Every bound the HTTP API declares, for in-process callers too; formats upper-cased as
    the catalog records them ("png" finds PNGs, in process as over HTTP) and the folder put in
    the form ingest records paths (``/lib/``, ``/lib/../lib`` find ``/lib``)."""
    if options.limit is None:
        options = replace(options, limit=default_limit(max_limit))
    check_page(page_size(options), options.offset, max_limit)
    score = options.min_score
    if score is not None and not MIN_SCORE_FLOOR <= score <= MIN_SCORE_CEILING:
        raise BadQuery(
            f"min_score must be between {MIN_SCORE_FLOOR} and {MIN_SCORE_CEILING}", score
        )
    collapse = options.collapse_duplicates
    if collapse is not None and not COLLAPSE_FLOOR < collapse <= COLLAPSE_CEILING:
        raise BadQuery(
            f"collapse_duplicates must be above {COLLAPSE_FLOOR} and at most {COLLAPSE_CEILING}",
            collapse,
        )
    _check_ranking(options)
    filters = options.filters
    _check_filters(filters)
    formats = tuple(f.upper() for f in filters.formats)
    folder = _folder(filters.folder)
    if formats == filters.formats and folder == filters.folder:
        return options
    return replace(options, filters=replace(filters, formats=formats, folder=folder))


def _folder(folder: str | None) -> str | None:
    """A folder filter in the form ingest records folders: absolute, no ``.`` or ``..``, no
    trailing slash. By its text only: the engine serves callers on other machines, and a
    search never touches the filesystem (the CLI resolves a folder its user typed, symlinks
    and the working folder included, before it gets here)."""
    if folder is None:
        return None
    if not folder.strip():
        raise BadQuery("folder is empty")
    if "\0" in folder or not folder.startswith("/"):
        raise BadQuery("folder must be an absolute path, as the library's paths are")
    normal = posixpath.normpath(folder)
    return "/" + normal.lstrip("/")  # normpath keeps a leading "//"


def _check_ranking(options: SearchOptions) -> None:
    if options.mode not in MODES:
        raise BadQuery(f"mode must be one of {', '.join(MODES)}", repr(options.mode))
    if options.sort not in SORTS:
        raise BadQuery(f"sort must be one of {', '.join(SORTS)}", repr(options.sort))
    if not 0.0 <= options.keyword_weight <= 1.0:
        raise BadQuery("keyword_weight must be between 0 and 1", options.keyword_weight)
    if options.mode == "keyword" and options.min_score is not None:
        raise BadQuery("min_score is a cosine similarity; keyword mode has none (use hybrid)")


def _check_filters(filters: SearchFilter) -> None:
    texts = [
        filters.folder, *filters.formats, filters.orientation, filters.camera_make,
        filters.camera_model, *(text for pair in filters.metadata for text in pair),
    ]  # fmt: skip
    if not all(text is None or is_utf8(text) for text in texts):
        raise BadQuery("filters must be valid UTF-8 text (a name in another encoding?)")
    if filters.folder is not None and len(filters.folder) > MAX_PATH_CHARS:
        raise BadQuery(f"folder must be at most {MAX_PATH_CHARS} characters")
    if len(filters.formats) > MAX_FORMATS or any(
        len(f) > MAX_FORMAT_CHARS for f in filters.formats
    ):
        raise BadQuery(f"at most {MAX_FORMATS} formats of at most {MAX_FORMAT_CHARS} characters")
    for low_name, high_name in (
        ("min_width", "max_width"), ("min_height", "max_height"), ("min_bytes", "max_bytes"),
    ):  # fmt: skip
        low, high = getattr(filters, low_name), getattr(filters, high_name)
        for name, value in ((low_name, low), (high_name, high)):
            if value is not None and value < 0:
                raise BadQuery(f"{name} must be at least 0", value)
        if low is not None and high is not None and low > high:
            raise BadQuery(f"{low_name} is above {high_name}", f"{low} > {high}")
    if filters.orientation is not None and filters.orientation not in ORIENTATIONS:
        raise BadQuery(
            f"orientation must be one of {', '.join(ORIENTATIONS)}", repr(filters.orientation)
        )
    for name in ("camera_make", "camera_model"):
        value = getattr(filters, name)
        if value is not None and not 1 <= len(value) <= MAX_CAMERA_CHARS:
            raise BadQuery(f"{name} must be 1 to {MAX_CAMERA_CHARS} characters")
    if len(filters.metadata) > MAX_METADATA:
        raise BadQuery(f"at most {MAX_METADATA} metadata filters")
    keys = [key for key, _ in filters.metadata]
    if len(set(keys)) < len(keys):  # HTTP's filters.metadata is a mapping: one value a key
        raise BadQuery("a metadata key may appear once in a query's filters")
    for key, value in filters.metadata:
        if not META_KEY.fullmatch(key):
            raise BadQuery(f"a metadata key must be {META_KEY_RULE}", repr(key))
        if not 1 <= len(value) <= MAX_META_VALUE_CHARS:
            raise BadQuery(f"metadata value for {key} must be 1 to {MAX_META_VALUE_CHARS} chars")


def parse_where(pair: str) -> tuple[str, str]:
    """``key=value`` (a metadata filter, as the CLI's --where and the query string's where)."""
    key, sign, value = pair.partition("=")
    if not sign:
        raise BadQuery("a metadata filter is key=value", repr(pair))
    return key.strip(), value.strip()


def keyword_words(terms: Sequence[Term]) -> list[str]:
    """The words the keyword side searches for: those of the positive text terms."""
    return [w for t in terms if t.kind == "text" and t.weight > 0 for w in words(str(t.value))]


def parse_terms(text: str) -> list[Term]:
    """``a dog on the beach +sunset -people`` -> [dog on beach (+1), sunset (+1), people (-1)].

    A word starting with + or - starts a new term with that sign; other words extend the
    current term.
    """
    terms: list[list[str]] = []
    signs: list[float] = []
    for word in text.split():
        if word[0] in "+-" and len(word) > 1:
            signs.append(-1.0 if word[0] == "-" else 1.0)
            terms.append([word[1:]])
        elif terms:
            terms[-1].append(word)
        else:
            signs.append(1.0)
            terms.append([word])
    if not terms:
        raise BadQuery("the query text is empty")
    if all(sign < 0 for sign in signs):
        raise BadQuery("a query needs at least one positive term")
    if len(terms) > MAX_TERMS:
        raise BadQuery(f"at most {MAX_TERMS} terms per query")
    return [Term("text", " ".join(words), sign) for words, sign in zip(terms, signs, strict=True)]


def path_term(value: str, allowed_roots: list[Path]) -> Path:
    """A server-side image path, accepted only under ``allowed_roots`` (resolved already)."""
    try:
        path = resolved(Path(value))
    except UnusablePath as error:
        raise BadQuery("that path is not usable", error) from None
    if not any(path.is_relative_to(root) for root in allowed_roots):
        raise BadQuery("that path is outside the server's allowed image roots")
    return path


def vector_only(options: SearchOptions, kind: str) -> SearchOptions:
    """Keyword and hybrid modes need words; an image or an asset has none."""
    if options.mode != "vector":
        raise BadQuery(
            f"{kind} has no words for {options.mode} mode: search with text terms "
            "(an image can be mixed with text in a terms query)"
        )
    return options
