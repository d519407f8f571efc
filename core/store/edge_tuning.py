"""How an embedded (Qdrant Edge) collection is laid out and searched, chosen by measurement.

``bench/store_bench.py`` prints the figures behind every number here (latency, recall@10
against exact search, reopen time, build time at 10k/100k/1M points on a 2-core machine):

* **Graph (HNSW, m=16, ef_construct=100)** over each sealed segment. Without it every search
  scans every vector (136 ms p50 at 1M points). A segment is sealed and indexed once it holds
  ``indexing_threshold`` vectors; smaller remainders stay a plain segment, scanned exactly.
* **int8 scalar quantization, with rescoring.** The graph walk compares int8 codes (a
  quarter of the memory traffic); the whole beam (``hnsw_ef`` candidates, at least
  ``oversampling`` x the page depth) is then rescored with the original float vectors, so
  every returned score is exact and only the choice of candidates is approximate.
* **Reopen.** The int8 codes are memory-mapped (Qdrant's ``cold`` tier), the date and keyword
  (sparse) indexes too (``cached``), instead of being copied onto the heap: that copy was most
  of a 4-5 s reopen at 1M points (a profile of ``EdgeShard.load``: the date index alone 26%,
  the int8 copy 34%). The float vectors are ``cold`` too: Qdrant's default maps them and reads
  all of them at the open (2 GB at 1M points: reopen + first search 2.6-3.9 s, against
  1.55-1.64 s without that read, side by side); searches only rescore a beam of them. The
  keyword and integer payload indexes stay on the heap (see ``field_index``).
  ``core.store.edge_warm`` reads the files the open needs into the page cache in one
  sequential pass before it, and has the kernel read the float vectors in the background
  after it (see there why).
* **Merged segments of at most ``max_segment_vectors``.** This caps the merges of later builds;
  a plain segment bigger than that is still indexed whole (1M vectors written in one run were
  one segment, built in 120-183 s on the 2-core machine).
* **Filters.** A filter matching fewer than ``full_scan_vectors`` points of a segment is
  answered by scanning those points (their int8 codes, the best rescored): near-exact, and
  linear in the matches (40-70 ns a point here). A wider one walks the graph with ACORN,
  which keeps a filtered walk connected. Without ACORN, a filter matching 27% of 5,000 points
  returned a single hit where ten existed (``tests/test_store_graph.py``). ACORN itself fails
  on selective filters: at 1M points a filter matching 2% of them got 5 of 10 hits (recall
  0.32), one matching 4% recall 0.95 at any ``hnsw_ef``; at 10% it reached 0.970-0.984, at
  12-13% 0.98-0.994 and it climbs from there (0.994-0.996 at 27%), whatever ``hnsw_ef`` past
  512 (m=32 did not help either). Hence the scan below 100,000 matches, and
  ``EdgeIndex.search`` redoes a short page exactly when more points match. A scan costs 40-70
  ns a match here (12% of 1M: 8-9 ms). ACORN's recall follows the share of a segment a
  filter matches, so each built segment's threshold is then raised to ``scan_share`` of its
  vectors, at most ``scan_share_cap`` (``core.store.edge_files``): a million-point segment
  scans filters matching up to 125,000 of its points, and segments under 800,000 points
  keep 100,000. One threshold of 125,000 for the whole collection would have scanned every
  segment below it whole on unfiltered searches too: at 100k points 4.3 ms instead of 1.6,
  text queries through ``clipdex serve`` 36 -> 39.5-41.7 ms. (40-70 ns a match is the int8
  codes' cost; a collection made with ``quantization="none"`` scans floats, slower.)

Qdrant Edge holds the Python GIL while it builds: a build pauses the whole process. So a
build runs only where nobody waits on that process: at the end of a CLI ingest or reindex
(which hold the store alone anyway) and in ``clipdex optimize``. ``clipdex serve`` never
builds by itself; new vectors stay in a plain segment, searched exactly, until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import qdrant_edge as qe

Quantization = Literal["int8", "none"]
_FLOAT_BYTES = 4


@dataclass(frozen=True, slots=True)
class EdgeTuning:
    quantization: Quantization = "int8"
    hnsw_ef: int = 512
    oversampling: float = 4.0
    m: int = 16
    ef_construct: int = 100
    indexing_threshold: int = 20_000  # vectors in a segment before it gets a graph
    max_segment_vectors: int = 200_000
    full_scan_vectors: int = 100_000  # a filter matching fewer points is answered by a scan
    scan_share: float = 0.125  # ... raised per built segment to this share of its vectors,
    scan_share_cap: int = 125_000  # at most this many (a scan of 125,000: about 9 ms here)

    def collection_config(self, dim: int, sparse: dict[str, Any]) -> qe.EdgeConfig:
        def kilobytes(vectors: int) -> int:
            return max(1, vectors * dim * _FLOAT_BYTES // 1024)

        quantization = (
            qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Cold)
            if self.quantization == "int8"
            else None
        )
        hnsw = qe.HnswIndexConfig(
            m=self.m,
            ef_construct=self.ef_construct,
            full_scan_threshold=kilobytes(self.full_scan_vectors),
            payload_m=0,  # no per-value subgraphs: ACORN and the exact path cover filters
        )
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(
                dim,
                qe.Distance.Cosine,
                quantization_config=quantization,
                hnsw_config=hnsw,
                memory=qe.Memory.Cold,  # mapped, not read whole at open (see "Reopen" above)
            ),
            sparse_vectors=sparse,
            # prevent_unoptimized stays off: EdgeIndex.count() relies on every point being
            # searchable (it reads the shard's point count).
            optimizers=qe.EdgeOptimizersConfig(
                indexing_threshold=kilobytes(self.indexing_threshold),
                max_segment_size=kilobytes(self.max_segment_vectors),
            ),
        )

    @staticmethod
    def field_index(schema: qe.PayloadSchemaType) -> Any:
        """Keyword and integer indexes on the heap: a filtered graph walk checks every point it
        visits against them, and memory-mapped ones made those walks about 2x slower (1M
        points: 9-12.5 ms instead of 5-7 ms at 10-27% selectivity). The date index is
        memory-mapped: rebuilding it on the heap was a quarter of a 1M-point reopen. Integers
        are only ever filtered by range, so they get no lookup (value -> points) index."""
        if schema == qe.PayloadSchemaType.Keyword:
            return qe.KeywordIndexParams(memory=qe.Memory.Pinned)
        if schema == qe.PayloadSchemaType.Integer:
            return qe.IntegerIndexParams(lookup=False, range=True, memory=qe.Memory.Pinned)
        if schema == qe.PayloadSchemaType.Datetime:
            return qe.DatetimeIndexParams(memory=qe.Memory.Cached)
        return schema

    @staticmethod
    def keyword_vectors() -> qe.EdgeSparseVectorParams:
        return qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, memory=qe.Memory.Cached)

    def search_params(self, exact: bool, filtered: bool, depth: int) -> qe.SearchParams:
        """``depth``: offset + limit. The candidates rescored are the whole beam (``hnsw_ef``)
        whatever the page, so page 2 continues page 1's order: rescoring only ``depth`` x
        oversampling of them let pages repeat one hit and skip another. Past the beam the
        search is exact (a scan): deep pages stay consistent and correct."""
        if exact or depth > self.hnsw_ef:
            return qe.SearchParams(exact=True)
        quantization = None
        if self.quantization == "int8":
            oversampling = max(self.oversampling, (self.hnsw_ef - 0.5) / max(1, depth))
            quantization = qe.QuantizationSearchParams(rescore=True, oversampling=oversampling)
        return qe.SearchParams(
            hnsw_ef=self.hnsw_ef,
            quantization=quantization,
            acorn=qe.AcornSearchParams(enable=True, max_selectivity=1.0) if filtered else None,
        )

    def segment_scan(self, vectors: int) -> int:
        """The filter-scan threshold a built segment of ``vectors`` gets at least."""
        return min(int(vectors * self.scan_share), self.scan_share_cap)

    def unindexed_due(self, points: int, indexed: int) -> int:
        """Vectors a build would put in a graph now: 0 while the plain part is small."""
        plain = max(0, points - indexed)
        return plain if plain >= self.indexing_threshold else 0
