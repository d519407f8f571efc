"""The Python client is light: importing it loads no catalog, image, model or server code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

HEAVY = ("sqlalchemy", "alembic", "PIL", "torch", "open_clip", "qdrant_client", "fastapi")


def test_importing_the_client_loads_nothing_heavy() -> None:
    code = f"import search.client, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_result_types_are_the_same_objects_everywhere() -> None:
    """Moved to search.results, still importable from where they were."""
    import search.engine
    import search.results
    import search.texts

    for name in ("Hit", "AssetInfo", "LabelScore", "TextHit", "TextSetInfo"):
        assert getattr(search.engine, name) is getattr(search.results, name)
    for name in ("TextHit", "TextSetInfo"):
        assert getattr(search.texts, name) is getattr(search.results, name)
