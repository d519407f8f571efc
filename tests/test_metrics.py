"""Work metrics on /metrics (asset states per version, failures, points, ingest totals, queue
depth) and the Grafana dashboard, which queries only metrics that are exported."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from clipdex.http import create_app
from clipdex.queue_depth import queue_keys
from core.runtime import Runtime
from core.settings import Settings
from ingest.run import ingest
from tests.conftest import REPO
from workers.app import QUEUE

DASHBOARD = REPO / "deploy" / "grafana" / "clipdex.json"
TEST_REDIS = "redis://127.0.0.1:6379/15"


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:  # fmt: skip
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def broken_library(library: Path) -> Path:
    (library / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return library


@pytest.mark.unit
def test_work_metrics_follow_ingest(runtime: Runtime, broken_library: Path) -> None:
    version = str(runtime.live_version().id)
    with TestClient(create_app(runtime.settings, runtime)) as client:
        before = scrape(client)
        assert value(before, "clipdex_ingest_images_total", outcome="encoded") == 0
        assert value(before, "clipdex_index_points", version=version) == 0
        ingest(runtime, [broken_library])
        ingest(runtime, [broken_library])  # nothing new: all reused
        after = scrape(client)
    assert value(after, "clipdex_assets", version=version, state="indexed") == 8
    assert value(after, "clipdex_assets", version=version, state="pending") == 0
    assert value(after, "clipdex_index_points", version=version) == 8
    assert value(after, "clipdex_live_version") == float(version)
    assert value(after, "clipdex_failures", stage="decode") == 1
    assert value(after, "clipdex_ingest_images_total", outcome="encoded") == 8
    assert value(after, "clipdex_ingest_images_total", outcome="scanned") == 18
    assert value(after, "clipdex_ingest_images_total", outcome="reused") == 9
    assert value(after, "clipdex_ingest_stage_seconds_total", stage="encode") > 0  # type: ignore[operator]
    assert value(after, "clipdex_ingest_runs", status="done") == 2
    assert not any(name == "clipdex_queue_depth" for name, _ in after)  # no broker, no series


@pytest.fixture
def test_queue() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not reachable at 127.0.0.1:6379 (start it: ./scripts/services.sh)")
    client.delete(*queue_keys(QUEUE))
    yield client
    client.delete(*queue_keys(QUEUE))
    client.close()


@pytest.mark.services
def test_queue_depth_and_the_dashboard_queries_only_exported_metrics(
    runtime: Runtime, library: Path, test_queue: redis.Redis
) -> None:
    ingest(runtime, [library])
    test_queue.rpush(QUEUE, "a", "b", "c")
    test_queue.rpush(queue_keys(QUEUE)[1], "d", "e")  # a priority-step list counts too
    settings = runtime.settings.model_copy(update={"broker_url": TEST_REDIS})
    with TestClient(create_app(settings, runtime)) as client:
        assert client.get("/v1/search", params={"q": "a dog"}).status_code == 200
        samples = scrape(client)
    assert value(samples, "clipdex_queue_depth") == 5
    exported = {name for name, _ in samples}
    queried = set()
    for expression in dashboard_expressions():
        queried |= set(re.findall(r"\bclipdex_[a-z0-9_]+", expression))
    assert queried and queried <= exported, queried - exported
    # and everything the work collector exports is on the dashboard
    work = {"clipdex_assets", "clipdex_failures", "clipdex_index_points", "clipdex_queue_depth",
            "clipdex_ingest_images_total", "clipdex_ingest_stage_seconds_total"}  # fmt: skip
    assert work <= queried


@pytest.mark.unit
def test_a_broker_away_leaves_metrics_answering(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    settings = runtime.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings, runtime)) as client:
        samples = scrape(client)
    assert not any(name == "clipdex_queue_depth" for name, _ in samples)
    assert value(samples, "clipdex_assets", version=str(runtime.live_version().id),
                 state="indexed") == 8  # fmt: skip


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.unit
def test_dashboard_is_importable_and_compose_provisions_it(settings: Settings) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "clipdex" and dashboard["panels"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
    compose = YAML(typ="safe").load((REPO / "docker-compose.yml").read_text())
    files = {name: REPO / config["file"] for name, config in compose["configs"].items()}
    assert all(path.is_file() for path in files.values()), files
    assert files["grafana-dashboard"].resolve() == DASHBOARD.resolve()
    for name in ("prometheus", "grafana"):
        used = {c["source"] for c in compose["services"][name]["configs"]}
        assert used <= set(files) and compose["services"][name]["profiles"] == ["monitoring"]
    prometheus = YAML(typ="safe").load(files["prometheus-config"].read_text())
    target = prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == f"api:{settings.api_port}" and "api" in compose["services"]
