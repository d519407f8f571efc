from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from clipdex.catalog import open_ready_runtime
from core.runtime import Runtime
from core.settings import Settings, load_settings
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[1]
CORPUS = (REPO.parent / "shared" / "corpus").resolve()  # ingest stores resolved paths
PHOTOS = CORPUS / "photos"
PILLOW = CORPUS / "pillow-images"
POSTGRES_URL = os.environ.get(
    "CLIPDEX_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _ignore_developer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; a developer's own CLIPDEX_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("CLIPDEX_") and name != "CLIPDEX_TEST_POSTGRES":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def photos() -> Path:
    if not PHOTOS.is_dir():
        pytest.fail(f"the shared corpus is missing: expected {PHOTOS}")
    return PHOTOS


@pytest.fixture(scope="session")
def pillow_images() -> Path:
    if not PILLOW.is_dir():
        pytest.fail(f"the shared corpus is missing: expected {PILLOW}")
    return PILLOW


@pytest.fixture
def library(tmp_path: Path, photos: Path) -> Path:
    """A private copy of a few real photos that tests may move, copy, modify and delete."""
    root = tmp_path / "library"
    (root / "trips").mkdir(parents=True)
    for index, source in enumerate(sorted(photos.glob("*.jpg"))[:8]):
        target = root / ("trips" if index % 2 else "") / source.name
        shutil.copy2(source, target)
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path / "home", model="clipdex-tiny", batch_size=4, decode_workers=2
    )


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def runtime(settings: Settings, fake_encoder: FakeEncoder) -> Iterator[Runtime]:
    opened = open_ready_runtime(settings, encoder=fake_encoder)
    yield opened
    opened.close()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL of this machine and CI; its absence fails the test, never skips."""
    if not _reachable("127.0.0.1", 5432):
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (start it; see README)")
    return POSTGRES_URL


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database on the machine's PostgreSQL, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"clipdex_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def cli_env(home: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPDEX_")}
    env.update({"CLIPDEX_HOME": str(home), "CLIPDEX_MODEL": "clipdex-tiny", "HF_HUB_OFFLINE": "1"})
    env.update(extra)
    return env


def run_cli(
    home: Path | str,
    *args: str,
    cwd: Path | None = None,
    drop: tuple[str, ...] = (),
    timeout: float = 300,
    settings: Mapping[str, str] | None = None,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """``clipdex ARGS`` in a fresh process on ``home`` (``""``: set, and empty), the tiny
    model, the ``settings`` and ``extra`` variables added and the ``drop`` ones left out."""
    added = {**(settings or {}), **extra}
    env = {k: v for k, v in cli_env(home, **added).items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a configuration or start-up mistake gets: exit 2, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, result.stderr
    assert lines[0].startswith("clipdex: error: "), lines[0]
    return lines[0]


def closed_port() -> int:
    """A local port nothing listens on (closed again when the probe goes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def random_vit_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ViT-B-32 with seeded random weights saved as an open_clip checkpoint file."""
    import torch

    from core.torch_compat import import_open_clip

    open_clip = import_open_clip()
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "vit-b-32-random.pt"
    torch.save(model.state_dict(), path)
    return path
