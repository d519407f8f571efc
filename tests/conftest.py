from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
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


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPDEX_")}
    env.update({"CLIPDEX_HOME": str(home), "CLIPDEX_MODEL": "clipdex-tiny", "HF_HUB_OFFLINE": "1"})
    env.update(extra)
    return env


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
