"""Queries: one or more weighted terms (text, image bytes, server path or stored asset).

The query vector is the normalized weighted sum of the normalized term vectors, so
``beach +sunset -people`` means "beach, and sunset, and away from people".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.store.base import SearchFilter

TermKind = Literal["text", "image", "path", "asset"]
MAX_TERMS = 16


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
