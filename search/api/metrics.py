"""Prometheus metrics: request counts and latency per route, text-cache effectiveness, and the
work (``search.api.work_metrics``: asset states per index version, failures, points, ingest
totals, broker queue depth), read from the catalog at scrape time so they cover every process
that shares it (CLI runs, workers, this server)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.api.work_metrics import WorkCollector
from search.engine import SearchService


class _CacheCollector(Collector):
    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[CounterMetricFamily]:
        service: SearchService | None = getattr(self._app.state, "service", None)
        family = CounterMetricFamily(
            "clipdex_text_cache", "Text-vector cache lookups", labels=["result"]
        )
        if service is not None:
            family.add_metric(["hit"], service.text_cache.hits)
            family.add_metric(["miss"], service.text_cache.misses)
        yield family


class _Observe:
    """Pure ASGI (not BaseHTTPMiddleware, whose task group would wrap body-limit errors)."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self._app = app
        self._requests = requests
        self._latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self._latency.labels(scope["method"], route).observe(time.perf_counter() - started)
            self._requests.labels(scope["method"], route, str(status)).inc()


def install_metrics(
    app: FastAPI, queue_depth: Callable[[], int] | None = None
) -> CollectorRegistry:
    """``queue_depth`` (from the entry layer, which knows the broker) gives the number of
    messages waiting in the workers' queue; None when there is no broker."""
    registry = CollectorRegistry()
    requests = Counter(
        "clipdex_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "clipdex_http_request_seconds", "HTTP request latency", ["method", "route"],
        registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )  # fmt: skip
    registry.register(_CacheCollector(app))
    registry.register(WorkCollector(app, queue_depth))
    app.add_middleware(_Observe, requests=requests, latency=latency)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
