"""Property tests of the HTTP API against its own OpenAPI schema: nothing a client sends gets
a 5xx. (schemathesis' fixture loader does not work with this pytest, so the app is built when
the module is collected, in a private temporary folder.)"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from clipdex.catalog import open_ready_runtime
from clipdex.http import create_app
from core.settings import Settings
from ingest.run import ingest
from tests.conftest import PHOTOS
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit


def _indexed_app() -> FastAPI:
    root = Path(tempfile.mkdtemp(prefix="clipdex-fuzz-"))
    library = root / "photos"
    shutil.copytree(PHOTOS, library, ignore=shutil.ignore_patterns("*.tsv"))
    config = Settings(home=root / "home", model="fake", allowed_image_roots=[library])
    runtime = open_ready_runtime(config, encoder=FakeEncoder())
    ingest(runtime, [library])
    return create_app(config, runtime)


schema = schemathesis.openapi.from_asgi("/openapi.json", _indexed_app())


@schema.parametrize()
@settings(
    max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)  # fmt: skip
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
