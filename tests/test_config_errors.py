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
from PIL import Image
from pydantic import ValidationError

from clipdex.errors import BadSettings
from core.settings import Settings, load_settings
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


@pytest.mark.parametrize("device", ["meta", "xla", "cuda:128"])
def test_a_torch_device_clipdex_cannot_run_on_is_one_line(tmp_path: Path, device: str) -> None:
    """torch.device() takes these (meta: a NotImplementedError traceback at the first encode;
    cuda:128 wraps around torch's 8-bit device index); the settings refuse them."""
    line = one_line_error(run_cli(tmp_path / "home", "search", "cat", CLIPDEX_DEVICE=device))
    assert line.startswith("clipdex: error: CLIPDEX_DEVICE: ")
    assert "expected auto, cpu, cuda, cuda:N (N < 128) or mps" in line


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:127", "mps", "mps:0"])
def test_the_devices_clipdex_runs_on_stay_accepted(device: str) -> None:
    assert load_settings(device=device).device == device


@pytest.mark.parametrize(
    "url", ["http://h:99999", ":::", "localhost:abc", "http://[::1", "http://a b"]
)
def test_a_malformed_qdrant_url_is_one_line(tmp_path: Path, url: str) -> None:
    """Each was a 54-line LocationParseError traceback from qdrant-client's parser once the
    store opened (here, with no index, status did not even notice); the settings refuse them."""
    line = one_line_error(run_cli(tmp_path / "home", "status", CLIPDEX_QDRANT_URL=url))
    assert line.startswith("clipdex: error: CLIPDEX_QDRANT_URL: ")
    assert "expected http(s)://host[:port]" in line


@pytest.mark.parametrize(
    "url",
    [
        "http://h:99999", "http://h:65536", "http://h:0", "http://h:-1", ":::", "localhost:abc",
        "http://[::1", "http://[::1]x:6333", "http://[zz]:6333", "http://a b", "http://h\t",
        "http://", "http://:6333", "https:///path", "http://a..b", "http://h%20x",
    ],
)  # fmt: skip
def test_malformed_qdrant_urls_are_refused_by_the_settings(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load_settings(qdrant_url=url)
    message = str(BadSettings.of(caught.value))
    assert message.startswith("CLIPDEX_QDRANT_URL: ") and "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:6333", "https://qdrant.example.com", "https://q.example.com:443/qdrant",
        "http://[::1]:6333", "[::1]:6333", "localhost:6333", "localhost", "127.0.0.1:6333",
        "qdrant:6333", "no-such-host.invalid",
    ],
)  # fmt: skip
def test_valid_qdrant_urls_stay_accepted_as_written(url: str) -> None:
    assert load_settings(qdrant_url=url).qdrant_url == url


def test_a_scheme_less_host_and_port_reaches_the_client_as_http(tmp_path: Path) -> None:
    """``name:6333`` (a compose service name and port) is http, as the settings read it;
    qdrant-client itself took ``name:`` for a scheme and failed with a ValueError traceback."""
    url = "no-such-qdrant-host:6333"
    line = one_line_error(run_cli(tmp_path / "home", "search", "x", CLIPDEX_QDRANT_URL=url))
    assert f"cannot reach the Qdrant server at http://{url} (CLIPDEX_QDRANT_URL)" in line


@pytest.mark.parametrize("value", ["inf", "1e308", "16.5"])
def test_draft_factor_is_finite_and_bounded(tmp_path: Path, value: str) -> None:
    """inf passed ``ge=1`` and every JPEG then failed with OverflowError (int(side * inf))."""
    library = tmp_path / "library"
    library.mkdir()
    Image.new("RGB", (64, 48), "red").save(library / "red.jpg")
    result = run_cli(tmp_path / "home", "ingest", str(library), CLIPDEX_DRAFT_FACTOR=value)
    assert one_line_error(result).startswith("clipdex: error: CLIPDEX_DRAFT_FACTOR: ")


@pytest.mark.parametrize("value", ["100000000000000000000", "100001"])
def test_search_max_limit_is_bounded(tmp_path: Path, value: str) -> None:
    """10**20 reached the embedded store's query and failed there: int too big to convert."""
    result = run_cli(
        tmp_path / "home", "search", "--limit", value, "cat", CLIPDEX_SEARCH_MAX_LIMIT=value
    )
    assert one_line_error(result).startswith("clipdex: error: CLIPDEX_SEARCH_MAX_LIMIT: ")


@pytest.mark.parametrize("value", ["100000000000000", "2592001"])
def test_reconcile_after_seconds_is_bounded(tmp_path: Path, value: str) -> None:
    """10**14 seconds overflowed timedelta in clipdex verify (on a home with an index); the
    bound is 30 days."""
    result = run_cli(tmp_path / "home", "verify", CLIPDEX_RECONCILE_AFTER_SECONDS=value)
    assert one_line_error(result).startswith("clipdex: error: CLIPDEX_RECONCILE_AFTER_SECONDS: ")


NUMERIC = [
    name for name, field in Settings.model_fields.items() if field.annotation in (int, float)
]
HUGE = [(name, "1" + "0" * 30) for name in NUMERIC] + [
    (name, value)
    for name in NUMERIC
    if Settings.model_fields[name].annotation is float
    for value in ("inf", "-inf", "nan", "1e308")
]


@pytest.mark.parametrize(("name", "value"), HUGE)
def test_every_numeric_setting_refuses_a_huge_or_non_finite_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """No number reaches a timedelta, a timer, numpy or a C library unbounded (each unbounded
    one was an OverflowError somewhere, or a silent infinity)."""
    monkeypatch.setenv(f"CLIPDEX_{name.upper()}", value)
    with pytest.raises(ValidationError) as caught:
        load_settings()
    message = str(BadSettings.of(caught.value))
    assert message.startswith(f"CLIPDEX_{name.upper()}: ") and "\n" not in message


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


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_catalog_is_one_line_naming_it_and_the_way_back(
    tmp_path: Path, library: Path, damage: str
) -> None:
    home = tmp_path / "home"
    assert run_cli(home, "ingest", str(library)).returncode == 0
    catalog = home / "catalog.db"
    if damage == "truncated":  # a copy cut short, say
        os.truncate(catalog, catalog.stat().st_size // 2)
    else:
        catalog.write_bytes(os.urandom(40_000))
    for command in (["status"], ["search", "a dog"], ["verify"], ["index", "list"]):
        line = one_line_error(run_cli(home, *command))
        assert f"the catalog {catalog} is damaged" in line and "Backup and restore" in line


def test_a_misspelt_variable_is_named_with_the_likely_one_and_status_names_the_catalog(
    tmp_path: Path,
) -> None:
    """``CLIPDEX_CATALOG_URL`` instead of ``CLIPDEX_DATABASE_URL`` silently left a SQLite
    catalog in use; status did not say which catalog it read."""
    done = run_cli(tmp_path / "home", "status", CLIPDEX_CATALOG_URL="postgresql://db/clipdex")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "clipdex: warning: CLIPDEX_CATALOG_URL is not a clipdex setting, ignored; "
        "did you mean CLIPDEX_DATABASE_URL?"
    ]
    assert f"catalog:   sqlite:///{tmp_path / 'home' / 'catalog.db'}" in done.stdout
