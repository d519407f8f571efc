"""Every configuration mistake is one line on stderr and exit status 2, never a traceback: a
refused CLIPDEX_* value, a database that cannot be reached (named without its password), a
device this machine lacks, and the default model's weights on a machine without network."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from clipdex.errors import BadSettings
from core.settings import load_settings
from tests.conftest import one_line_error, run_cli

pytestmark = pytest.mark.tiny_real

UNREACHABLE = "nobody:hunter2@127.0.0.1:1/x"


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ValidationError) as caught:
        load_settings(batch_size="abc")
    message = str(BadSettings.of(caught.value))
    assert message.startswith("CLIPDEX_BATCH_SIZE: ") and "\n" not in message


@pytest.mark.parametrize("value", ["abc", "0"])
def test_invalid_setting_is_one_line(tmp_path: Path, value: str) -> None:
    line = one_line_error(run_cli(tmp_path / "home", "status", CLIPDEX_BATCH_SIZE=value))
    assert line.startswith("clipdex: error: CLIPDEX_BATCH_SIZE: ")


@pytest.mark.parametrize("command", ["status", "migrate"])
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_unreachable_database_is_one_line_without_password(
    tmp_path: Path, command: str, scheme: str
) -> None:
    url = f"{scheme}://{UNREACHABLE}"
    line = one_line_error(run_cli(tmp_path / "home", command, CLIPDEX_DATABASE_URL=url))
    assert "cannot connect to the catalog database" in line
    assert "127.0.0.1:1/x" in line and "hunter2" not in line


def test_unparsable_database_url_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run_cli(tmp_path / "home", "status", CLIPDEX_DATABASE_URL="nonsense"))
    assert "CLIPDEX_DATABASE_URL" in line


def test_heroku_style_postgres_url_is_accepted(tmp_path: Path, fresh_postgres: str) -> None:
    heroku = "postgres://" + fresh_postgres.split("://", 1)[1]
    migrated = run_cli(tmp_path / "home", "migrate", CLIPDEX_DATABASE_URL=heroku)
    assert migrated.returncode == 0, migrated.stderr
    status = run_cli(tmp_path / "home", "status", "--json", CLIPDEX_DATABASE_URL=heroku)
    assert status.returncode == 0, status.stderr


def test_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = one_line_error(run_cli(tmp_path / "home", "search", "x", CLIPDEX_DEVICE="cuda"))
    assert "CLIPDEX_DEVICE" in line and "CUDA" in line


def test_unknown_device_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run_cli(tmp_path / "home", "search", "x", CLIPDEX_DEVICE="gpu"))
    assert "CLIPDEX_DEVICE" in line


def _import_seconds() -> float:
    """What loading torch and open_clip costs on this machine right now (it may be busy)."""
    code = "from core.torch_compat import import_open_clip; import_open_clip()"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", code],
        check=True, cwd=Path(__file__).resolve().parents[1], env=dict(os.environ), timeout=300,
    )  # fmt: skip
    return time.monotonic() - started


def test_default_model_offline_fails_fast_with_one_line(tmp_path: Path) -> None:
    """No HF_HUB_OFFLINE: the hub is unreachable from here, and the load must say so at once
    (it took 57 s of hub retries and ~47 lines). The bound is 20 s, or the cost of importing
    torch and open_clip plus 15 s when the machine is too busy for that."""
    budget = max(20.0, _import_seconds() + 15.0)
    started = time.monotonic()
    result = run_cli(
        tmp_path / "home", "search", "x", drop=("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
        CLIPDEX_MODEL="ViT-B-32", CLIPDEX_PRETRAINED="openai",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    line = one_line_error(result)
    assert "CLIPDEX_PRETRAINED" in line and "ViT-B-32" in line
    assert elapsed < budget, f"took {elapsed:.1f}s (budget {budget:.1f}s)"
