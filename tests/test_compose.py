"""docker-compose.yml, checked statically (no Docker engine runs here): the compose-spec JSON
schema that check-jsonschema ships, plus what a schema cannot see."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from core.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema)


def test_every_reference_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes, (name, source)
    assert {"redis", "qdrant", "postgres", "migrate", "api", "worker"} <= set(services)


def test_startup_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("redis", "qdrant", "postgres"):
        assert "healthcheck" in services[name], name
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["qdrant"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_durable_broker_gpu_worker_and_loopback_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_secrets_are_required_and_settings_exist(compose: dict[str, Any]) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for secret in ("POSTGRES_PASSWORD", "QDRANT_API_KEY", "CLIPDEX_API_WRITE_KEYS"):
        uses = re.findall(r"\$\{" + secret + r"(:[?-])", text)
        assert uses and set(uses) == {":?"}, secret  # never a silent empty default
    environment = compose["services"]["api"]["environment"]
    fields = {f"CLIPDEX_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in environment if k.startswith("CLIPDEX_")} - fields
    assert unknown == set()
