"""Queries: one or more weighted terms (text, image bytes, server path or stored asset).

The query vector is the normalized weighted sum of the normalized term vectors, so
``beach +sunset -people`` means "beach, and sunset, and away from people".
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from core.store.base import SearchFilter

TermKind = Literal["text", "image", "path", "asset"]
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


class BadQuery(ValueError):
    """The caller asked for something invalid; the message says what."""


@dataclass(frozen=True, slots=True)
class Term:
    kind: TermKind
    value: str | bytes
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.weight == 0 or self.weight != self.weight or abs(self.weight) > 100:
            raise BadQuery(f"term weight must be non-zero and within ±100, got {self.weight}")
        if self.kind == "text" and not str(self.value).strip():
            raise BadQuery("a text term is empty")


@dataclass(frozen=True, slots=True)
class SearchOptions:
    limit: int = 10
    offset: int = 0
    filters: SearchFilter = field(default_factory=SearchFilter)
    min_score: float | None = None
    adaptive_cutoff: bool = False
    collapse_duplicates: float | None = None  # cosine above which two hits count as one


def check_page(limit: int, offset: int, max_limit: int) -> None:
    if not 1 <= limit <= max_limit:
        raise BadQuery(f"limit must be between 1 and {max_limit}, got {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise BadQuery(f"offset must be between 0 and {MAX_OFFSET}, got {offset}")


def checked_options(options: SearchOptions, max_limit: int) -> SearchOptions:
    """Every bound the HTTP API declares, for in-process callers too; formats upper-cased as
    the catalog records them ("png" finds PNGs, in process as over HTTP)."""
    check_page(options.limit, options.offset, max_limit)
    score = options.min_score
    if score is not None and not MIN_SCORE_FLOOR <= score <= MIN_SCORE_CEILING:
        raise BadQuery(
            f"min_score must be between {MIN_SCORE_FLOOR} and {MIN_SCORE_CEILING}, got {score}"
        )
    collapse = options.collapse_duplicates
    if collapse is not None and not COLLAPSE_FLOOR < collapse <= COLLAPSE_CEILING:
        raise BadQuery(
            f"collapse_duplicates must be above {COLLAPSE_FLOOR} and at most {COLLAPSE_CEILING},"
            f" got {collapse}"
        )
    filters = options.filters
    if filters.folder is not None and len(filters.folder) > MAX_PATH_CHARS:
        raise BadQuery(f"folder must be at most {MAX_PATH_CHARS} characters")
    if len(filters.formats) > MAX_FORMATS or any(
        len(f) > MAX_FORMAT_CHARS for f in filters.formats
    ):
        raise BadQuery(f"at most {MAX_FORMATS} formats of at most {MAX_FORMAT_CHARS} characters")
    for name in ("min_width", "min_height"):
        value = getattr(filters, name)
        if value is not None and value < 0:
            raise BadQuery(f"{name} must be at least 0, got {value}")
    formats = tuple(f.upper() for f in filters.formats)
    if formats == filters.formats:
        return options
    return replace(options, filters=replace(filters, formats=formats))


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
    """A server-side image path, accepted only under the configured roots."""
    path = Path(value).expanduser().resolve()
    if not any(path.is_relative_to(root.resolve()) for root in allowed_roots):
        raise BadQuery("that path is outside the server's allowed image roots")
    return path
