"""Metrics of the work, read from the catalog (and the live index) at scrape time: every process
that shares the catalog shows up (inline ingest runs, workers, this server's own jobs), and a
restart loses nothing.

- ``clipdex_assets{version,state}``: assets by state in each index version (gauge).
- ``clipdex_live_version``: the id of the live index version (gauge).
- ``clipdex_index_points{version}``: points in the live index (gauge).
- ``clipdex_failures{stage}``: files recorded as failed, by stage (gauge).
- ``clipdex_ingest_images_total{outcome}``: finished ingest runs' images: scanned, new,
  encoded, reused (unchanged, moved, duplicate or already stored), failed (counter).
- ``clipdex_ingest_stage_seconds_total{stage}``: those runs' seconds in encode, write and
  waiting for decode (counter); with ``..._images_total{outcome="encoded"}`` it gives
  seconds per encoded image, and ``deriv(clipdex_assets{state="indexed"}[5m])`` the images/s of
  every worker together.
- ``clipdex_ingest_runs{status}``: ingest runs by status (gauge).
- ``clipdex_queue_depth``: messages waiting for the workers (gauge; only with a broker).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.catalog.index_versions import active_index
from core.catalog.models import AssetIndexState, AssetState, Failure, IngestRun
from core.images import STAGE_DECODE, STAGE_READ

log = logging.getLogger(__name__)

REUSED = ("unchanged", "moved", "duplicates", "reused")
OUTCOMES = ("scanned", "new", "encoded", "failed")


class WorkCollector(Collector):
    """Reads ``app.state.runtime`` and ``app.state.service`` when the server has them."""

    def __init__(self, app: Any, queue_depth: Callable[[], int] | None) -> None:
        self._app = app
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        runtime = getattr(self._app.state, "runtime", None)
        if runtime is not None:
            with runtime.sessions() as session:
                yield from catalog_metrics(session)
            if runtime.catalog_live() is not None:  # never create an index to count it
                yield from self._points()
        if self._queue_depth is not None:
            yield from self._queue()

    def _points(self) -> Iterator[Metric]:
        service = getattr(self._app.state, "service", None)
        if service is None:
            return
        try:
            target = service.target()
            count = target.index.count()
        except Exception as error:  # no index yet, a store away: the other metrics still answer
            log.debug("no points metric: %s", error)
            return
        family = GaugeMetricFamily(
            "clipdex_index_points", "Points in the live index", labels=["version"]
        )
        family.add_metric([str(target.version.id)], count)
        yield family

    def _queue(self) -> Iterator[Metric]:
        assert self._queue_depth is not None
        try:
            depth = self._queue_depth()
        except Exception as error:  # a broker away is visible as a missing series
            log.warning("queue depth unavailable: %s", error)
            return
        yield GaugeMetricFamily(
            "clipdex_queue_depth", "Messages waiting in the workers' queue", value=depth
        )


def catalog_metrics(session: Session) -> Iterator[Metric]:
    assets = GaugeMetricFamily(
        "clipdex_assets", "Assets by state per index version", labels=["version", "state"]
    )
    states: dict[int, dict[str, int]] = {}
    query = select(AssetIndexState.index_version_id, AssetIndexState.state, func.count()).group_by(
        AssetIndexState.index_version_id, AssetIndexState.state
    )
    for version_id, state, count in session.execute(query):
        states.setdefault(version_id, {s.value: 0 for s in AssetState})[state] = count
    live = active_index(session)
    if live is not None:
        states.setdefault(live.id, {s.value: 0 for s in AssetState})
        yield GaugeMetricFamily("clipdex_live_version", "The live index version", value=live.id)
    for version_id, by_state in sorted(states.items()):
        for state, count in sorted(by_state.items()):
            assets.add_metric([str(version_id), state], count)
    yield assets
    failures = GaugeMetricFamily("clipdex_failures", "Failed files by stage", labels=["stage"])
    by_stage = dict.fromkeys((STAGE_READ, STAGE_DECODE), 0)  # present at zero: graphs start at 0
    query_failures = select(Failure.stage, func.count()).group_by(Failure.stage)
    by_stage.update({stage: count for stage, count in session.execute(query_failures)})
    for stage, count in sorted(by_stage.items()):
        failures.add_metric([stage], count)
    yield failures
    yield from _run_metrics(session)


def _run_metrics(session: Session) -> Iterator[Metric]:
    images: dict[str, float] = dict.fromkeys((*OUTCOMES, "reused"), 0.0)
    stages: dict[str, float] = dict.fromkeys(("encode", "write", "wait_decode"), 0.0)
    statuses: Counter[str] = Counter()
    for status, counts in session.execute(select(IngestRun.status, IngestRun.counts)):
        statuses[status] += 1
        counts = counts or {}
        for outcome in OUTCOMES:
            images[outcome] += _number(counts.get(outcome))
        images["reused"] += sum(_number(counts.get(key)) for key in REUSED)
        for stage, seconds in (counts.get("stage_seconds") or {}).items():
            stages[stage] = stages.get(stage, 0.0) + _number(seconds)
    total = CounterMetricFamily(
        "clipdex_ingest_images", "Images of ingest runs by outcome", labels=["outcome"]
    )
    for outcome, count in sorted(images.items()):
        total.add_metric([outcome], count)
    yield total
    seconds = CounterMetricFamily(
        "clipdex_ingest_stage_seconds", "Seconds of ingest runs by stage", labels=["stage"]
    )
    for stage, value in sorted(stages.items()):
        seconds.add_metric([stage], value)
    yield seconds
    runs = GaugeMetricFamily("clipdex_ingest_runs", "Ingest runs by status", labels=["status"])
    for status, count in sorted(statuses.items()):
        runs.add_metric([status], count)
    yield runs


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
