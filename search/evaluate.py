"""Retrieval quality of one index version: labelled queries (``clipdex eval``) and a label-free
self-check (``clipdex eval --self-check``).

The metric math is pure and works on ranked id lists. ``recall@k`` is the fraction of queries
with at least one expected asset among the first k results (the "R@k" of CLIP retrieval
papers); ``MRR`` is the mean of 1/rank of the first expected asset (0 when it is not in the
first 10); ``nDCG@10`` uses binary relevance, with the ideal ranking putting every expected
asset first. Vectors are computed with the model that built the version
(``Runtime.encoder_for``) and searched in that version's collection, never through the live
search service, so a version that is not live can be evaluated too.
"""

from __future__ import annotations

import io
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from core.catalog.models import AssetIndexState, AssetState, IndexVersion, Location
from core.images import ImageRejected, decode_bytes, decode_file
from core.paths import resolved
from core.preprocess import to_model_input

if TYPE_CHECKING:
    from core.runtime import Runtime

CUTOFFS = (1, 5, 10)
DEPTH = max(CUTOFFS)
ENCODE_BATCH = 32


class QueryFileError(ValueError):
    """A queries file that cannot be read; the message names the line."""


# --- metric math (pure) -----------------------------------------------------------------------


def first_hit(ranked: Sequence[str], relevant: Iterable[str]) -> int | None:
    """1-based rank of the first relevant id in ``ranked``, or None."""
    wanted = set(relevant)
    for rank, item in enumerate(ranked, start=1):
        if item in wanted:
            return rank
    return None


def hit_at(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """1.0 when a relevant id is among the first ``k`` results, else 0.0."""
    rank = first_hit(ranked[:k], relevant)
    return 0.0 if rank is None else 1.0


def reciprocal_rank(ranked: Sequence[str], relevant: Iterable[str]) -> float:
    rank = first_hit(ranked, relevant)
    return 0.0 if rank is None else 1.0 / rank


def ndcg_at(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Binary-relevance nDCG@k; 0.0 when nothing is relevant."""
    wanted = set(relevant)
    if not wanted:
        return 0.0
    gains = [1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], 1) if item in wanted]
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return sum(gains) / ideal


@dataclass(frozen=True, slots=True)
class Scores:
    """Mean metrics over a set of rankings."""

    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr: float
    ndcg_at_10: float
    queries: int


def score(rankings: Sequence[tuple[Sequence[str], Iterable[str]]]) -> Scores:
    """Mean recall@1/5/10, MRR and nDCG@10 over (ranked ids, relevant ids) pairs."""
    pairs = [(list(ranked)[:DEPTH], set(relevant)) for ranked, relevant in rankings]
    count = len(pairs)

    def mean(values: Iterable[float]) -> float:
        return sum(values) / count if count else 0.0

    return Scores(
        recall_at_1=mean(hit_at(r, rel, 1) for r, rel in pairs),
        recall_at_5=mean(hit_at(r, rel, 5) for r, rel in pairs),
        recall_at_10=mean(hit_at(r, rel, 10) for r, rel in pairs),
        mrr=mean(reciprocal_rank(r, rel) for r, rel in pairs),
        ndcg_at_10=mean(ndcg_at(r, rel, 10) for r, rel in pairs),
        queries=count,
    )


# --- labelled queries ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvalQuery:
    """One line of a queries file. ``expected`` holds asset ids or paths as written; relative
    paths (of ``image`` and ``expected``) are taken from the queries file's folder."""

    line: int
    expected: tuple[str, ...]
    text: str | None = None
    image: Path | None = None
    base: Path = Path(".")


@dataclass(frozen=True, slots=True)
class EvalReport:
    version: int
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr: float
    ndcg_at_10: float
    queries: int
    # Expected entries that are neither an asset id nor a cataloged path, as "line N: entry".
    unknown: tuple[str, ...] = ()
    # Queries left out because none of their expected entries is known.
    skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "queries": self.queries,
            "recall@1": self.recall_at_1,
            "recall@5": self.recall_at_5,
            "recall@10": self.recall_at_10,
            "mrr": self.mrr,
            "ndcg@10": self.ndcg_at_10,
            "skipped": self.skipped,
            "unknown": list(self.unknown),
        }


def load_queries(path: Path) -> list[EvalQuery]:
    """Parse a JSONL queries file; raises :class:`QueryFileError` naming the first bad line."""
    base = path.resolve().parent
    queries: list[EvalQuery] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            queries.append(_parse_line(raw, number, path, base))
    if not queries:
        raise QueryFileError(f"{path}: no queries")
    return queries


def _parse_line(raw: bytes, number: int, path: Path, base: Path) -> EvalQuery:
    def bad(reason: str) -> QueryFileError:
        return QueryFileError(f"{path} line {number}: {reason}")

    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise bad("expected a JSON object")
    expected = value.get("expected")
    if (
        not isinstance(expected, list)
        or not expected
        or not all(isinstance(e, str) and e for e in expected)
    ):
        raise bad('"expected" must be a non-empty list of paths or asset ids')
    text, image = value.get("text"), value.get("image")
    if (text is None) == (image is None):
        raise bad('give exactly one of "text" or "image"')
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise bad('"text" must be a non-empty string')
    if image is not None and (not isinstance(image, str) or not image):
        raise bad('"image" must be a path')
    unknown_keys = set(value) - {"text", "image", "expected"}
    if unknown_keys:
        raise bad(f"unknown keys {sorted(unknown_keys)}")
    return EvalQuery(
        line=number,
        expected=tuple(expected),
        text=text,
        image=(base / image) if image is not None else None,
        base=base,
    )


def resolve_expected(
    runtime: Runtime, version: IndexVersion, queries: Sequence[EvalQuery]
) -> dict[str, str]:
    """Map each expected entry to the asset ``version`` indexes for it (ids as is, paths
    through the locations table, a moved file's old path included). An entry that version
    does not index (a deleted file, an unknown path) is left out: unknown, not a miss."""
    entries = {entry for query in queries for entry in query.expected}
    as_ids = {e for e in entries if _is_uuid(e)}
    as_paths = {e: _absolute(e, q.base) for q in queries for e in q.expected if e not in as_ids}
    found = {asset_id: asset_id for asset_id in as_ids}  # kept below if the version has it
    with runtime.sessions() as session:
        wanted = sorted(set(as_paths.values()))
        by_path: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = select(Location.path, Location.asset_id).where(Location.path.in_(chunk))
            by_path.update({row.path: row.asset_id for row in session.execute(query)})
        candidates = sorted({*found.values(), *by_path.values()})
        indexed: set[str] = set()
        for start in range(0, len(candidates), 500):
            held = select(AssetIndexState.asset_id).where(
                AssetIndexState.index_version_id == version.id,
                AssetIndexState.state == AssetState.INDEXED,
                AssetIndexState.asset_id.in_(candidates[start : start + 500]),
            )
            indexed.update(session.scalars(held))
    for entry, absolute in as_paths.items():
        if absolute in by_path:
            found[entry] = by_path[absolute]
    return {entry: asset for entry, asset in found.items() if asset in indexed}


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _absolute(entry: str, base: Path) -> str:
    return str(resolved(Path(entry), base))


def evaluate(runtime: Runtime, version: IndexVersion, queries: Sequence[EvalQuery]) -> EvalReport:
    """Encode every query with ``version``'s model, search its collection and score the
    rankings against the expected assets."""
    known = resolve_expected(runtime, version, queries)
    unknown = tuple(
        f"line {q.line}: {entry}" for q in queries for entry in q.expected if entry not in known
    )
    usable = [q for q in queries if any(e in known for e in q.expected)]
    vectors = _query_vectors(runtime, version, usable)
    index = runtime.index_of(version)
    rankings = []
    for query, vector in zip(usable, vectors, strict=True):
        ranked = [hit.id for hit in index.search(vector, DEPTH)]
        rankings.append((ranked, {known[e] for e in query.expected if e in known}))
    scores = score(rankings)
    return EvalReport(
        version=version.id,
        recall_at_1=scores.recall_at_1,
        recall_at_5=scores.recall_at_5,
        recall_at_10=scores.recall_at_10,
        mrr=scores.mrr,
        ndcg_at_10=scores.ndcg_at_10,
        queries=scores.queries,
        unknown=unknown,
        skipped=len(queries) - len(usable),
    )


def _query_vectors(
    runtime: Runtime, version: IndexVersion, queries: Sequence[EvalQuery]
) -> list[NDArray[np.float32]]:
    if not queries:
        return []
    encoder = runtime.encoder_for(version)
    limits = runtime.decode_limits(version)
    vectors: dict[int, NDArray[np.float32]] = {}
    texts = [(i, q.text) for i, q in enumerate(queries) if q.text is not None]
    for start in range(0, len(texts), ENCODE_BATCH):
        batch = texts[start : start + ENCODE_BATCH]
        encoded = encoder.encode_texts([text for _, text in batch])
        vectors.update({i: encoded[row] for row, (i, _) in enumerate(batch)})
    for i, query in enumerate(queries):
        if query.image is not None:
            try:
                decoded = decode_file(query.image, limits)
            except ImageRejected as rejected:
                raise QueryFileError(
                    f"line {query.line}: image {query.image}: {rejected.reason}"
                ) from None
            pixels = to_model_input(decoded.image, encoder.preprocess)
            vectors[i] = encoder.encode_images(pixels[np.newaxis])[0]
    return [vectors[i] for i in range(len(queries))]


# --- self-check ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelfCheckReport:
    version: int
    samples: int
    recall_at_1: float
    mrr: float
    unreadable: int = 0
    misses: tuple[str, ...] = field(default=())  # asset ids whose original was not first

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "samples": self.samples,
            "recall@1": self.recall_at_1,
            "mrr": self.mrr,
            "unreadable": self.unreadable,
            "misses": list(self.misses),
        }


def degraded_copy(image: Any, scale: float = 0.75, quality: int = 60) -> bytes:
    """``image`` resized by ``scale`` and re-encoded as a JPEG of ``quality``, in memory."""
    from PIL import Image

    width, height = image.size
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    smaller = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    smaller.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def sample_assets(runtime: Runtime, version: IndexVersion) -> list[tuple[str, str]]:
    """(asset id, first live path) of every asset indexed in ``version``, in the same
    order on every run, unrelated to folders or names (sorted ids): take the first N."""
    query = (
        select(Location.asset_id, Location.path)
        .join(AssetIndexState, AssetIndexState.asset_id == Location.asset_id)
        .where(
            AssetIndexState.index_version_id == version.id,
            AssetIndexState.state == AssetState.INDEXED,
            Location.missing.is_(False),
        )
        .order_by(Location.asset_id, Location.path)
    )
    first_path: dict[str, str] = {}
    with runtime.sessions() as session:
        for asset_id, path in session.execute(query):
            first_path.setdefault(asset_id, path)
    ids = sorted(first_path)  # ids are uuid5 of the content hash: a deterministic spread
    return [(asset_id, first_path[asset_id]) for asset_id in ids]


def self_check(runtime: Runtime, version: IndexVersion, count: int) -> SelfCheckReport:
    """Search ``count`` library images by a resized, re-compressed copy of themselves and report
    how often the original comes back first. Unreadable files are replaced by the next ones."""
    encoder = runtime.encoder_for(version)
    limits = runtime.decode_limits(version)
    index = runtime.index_of(version)
    candidates = sample_assets(runtime, version)
    rankings: list[tuple[list[str], set[str]]] = []
    unreadable = 0
    pending: list[tuple[str, NDArray[np.uint8]]] = []

    def flush() -> None:
        if not pending:
            return
        vectors = encoder.encode_images(np.stack([pixels for _, pixels in pending]))
        for (asset_id, _), vector in zip(pending, vectors, strict=True):
            rankings.append(([hit.id for hit in index.search(vector, DEPTH)], {asset_id}))
        pending.clear()

    for asset_id, path in candidates:
        if len(rankings) + len(pending) >= count:
            break
        try:
            original = decode_file(Path(path), limits)
            copy = decode_bytes(degraded_copy(original.image), limits)
            pending.append((asset_id, to_model_input(copy.image, encoder.preprocess)))
        except (ImageRejected, OSError):
            unreadable += 1
            continue
        if len(pending) >= ENCODE_BATCH:
            flush()
    flush()
    scores = score(rankings)
    misses = tuple(sorted(a for ranked, ids in rankings for a in ids if ranked[:1] != [a]))
    return SelfCheckReport(
        version=version.id,
        samples=scores.queries,
        recall_at_1=scores.recall_at_1,
        mrr=scores.mrr,
        unreadable=unreadable,
        misses=misses,
    )
