from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_settings_read_the_clipdex_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLIPDEX_HOME", str(tmp_path))
    monkeypatch.setenv("CLIPDEX_BATCH_SIZE", "7")
    monkeypatch.setenv("CLIPDEX_PRETRAINED", "/models/ckpt.bin")
    settings = load_settings()
    assert settings.home == tmp_path.resolve()
    assert settings.batch_size == 7 and settings.pretrained == "/models/ckpt.bin"
    assert settings.model == "ViT-B-32"
    assert settings.catalog_url == f"sqlite:///{tmp_path.resolve() / 'catalog.db'}"
    assert settings.store_path == tmp_path.resolve() / "store"


def test_explicit_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPDEX_MODEL", "RN50")
    assert load_settings(model="ViT-L-14").model == "ViT-L-14"


def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPDEX_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="batch_size"):
        load_settings()


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom clipdex.cli import app\n"
        "result = CliRunner().invoke(app, ['search', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'qdrant_edge') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


def test_the_readme_settings_table_is_generated_from_the_settings() -> None:
    """Every setting is documented, and the README cannot drift from the code."""
    from clipdex.settings_doc import replace_in

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert replace_in(readme) == readme, "run: python -m clipdex.settings_doc"
    for name in Settings.model_fields:
        assert f"`CLIPDEX_{name.upper()}`" in readme
