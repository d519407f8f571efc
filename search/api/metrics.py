"""Prometheus metrics: request counts and latency per route, text-cache effectiveness."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

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


def install_metrics(app: FastAPI) -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter(
        "clipdex_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "clipdex_http_request_seconds", "HTTP request latency", ["method", "route"],
        registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )  # fmt: skip
    registry.register(_CacheCollector(app))

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        latency.labels(request.method, route).observe(time.perf_counter() - started)
        requests.labels(request.method, route, str(response.status_code)).inc()
        return response

    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
