"""Commands that compute no vector never import torch or load a model: they read the live index
version's model identity from the catalog and compare it with the configured one by name and
tag. Proven by running them with a ``torch`` (and ``open_clip``) on the path that raise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

pytestmark = pytest.mark.tiny_real

POISON = 'raise RuntimeError("{name} was imported by a command that needs no model")\n'


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("poisoned")
    for name in ("torch", "torchvision", "open_clip"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(POISON.format(name=name))
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> tuple[Path, Path]:
    """A home with a few photos ingested by the real tiny model."""
    root = tmp_path_factory.mktemp("model-free")
    library = root / "library"
    library.mkdir()
    for source in sorted(photos.glob("*.jpg"))[:6]:
        shutil.copy2(source, library / source.name)
    result = run(root / "home", None, "ingest", str(library), "--json")
    assert result.returncode == 0, result.stderr
    return root / "home", library


def run(
    home: Path, poisoned: Path | None, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    extra = {"PYTHONPATH": str(poisoned)} if poisoned else {}
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=cli_env(home, **extra, **env), capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_poison_works(home: tuple[Path, Path], poisoned: Path) -> None:
    result = run(home[0], poisoned, "search", "a dog", "--json")
    assert result.returncode != 0
    assert "torch was imported by a command that needs no model" in result.stderr


def test_status_asset_similar_failures_need_no_model(
    home: tuple[Path, Path], poisoned: Path
) -> None:
    status = run(home[0], poisoned, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["indexed"] == report["points"] == 6
    assert "RANDOM WEIGHTS" in report["model"]["label"]

    plain = run(home[0], None, "search", "a boat", "--json", "--limit", "2")
    first = json.loads(plain.stdout)[0]["id"]
    asset = run(home[0], poisoned, "asset", first, "--json")
    assert asset.returncode == 0, asset.stderr
    assert json.loads(asset.stdout)["state"] == "indexed"
    similar = run(home[0], poisoned, "similar", first, "--json", "--limit", "3")
    assert similar.returncode == 0, similar.stderr
    hits = json.loads(similar.stdout)
    assert len(hits) == 3 and first not in {hit["id"] for hit in hits}
    assert run(home[0], poisoned, "failures", "--json").returncode == 0


def test_a_no_op_ingest_needs_no_model(home: tuple[Path, Path], poisoned: Path) -> None:
    result = run(home[0], poisoned, "ingest", str(home[1]), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["scanned"], report["unchanged"], report["encoded"]) == (6, 6, 0)


def test_a_moved_file_needs_no_model(home: tuple[Path, Path], poisoned: Path) -> None:
    """A move rewrites the payload of an existing point: the store opens, the model does not."""
    library = home[1]
    first = sorted(library.glob("*.jpg"))[0]
    (library / "moved").mkdir(exist_ok=True)
    first.rename(library / "moved" / first.name)
    result = run(home[0], poisoned, "ingest", str(library), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["moved"] == 1


def test_a_different_configured_model_is_refused_without_loading_it(
    home: tuple[Path, Path], poisoned: Path
) -> None:
    result = run(home[0], poisoned, "ingest", str(home[1]), CLIPDEX_MODEL="ViT-B-32")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "ViT-B-32" in result.stderr
    assert "never mixed" in result.stderr


def test_enqueueing_for_workers_needs_no_model(
    home: tuple[Path, Path], poisoned: Path, photos: Path
) -> None:
    """New files with a broker: registered, queued and sent to Redis, nothing encoded here."""
    import redis

    library = home[1]
    for source in sorted(photos.glob("*.jpg"))[6:9]:
        shutil.copy2(source, library / source.name)
    broker = "redis://127.0.0.1:6379/13"
    client = redis.Redis.from_url(broker)
    client.flushdb()
    try:
        result = run(
            home[0], poisoned, "ingest", str(library), "--no-wait", "--json",
            CLIPDEX_BROKER_URL=broker,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["queued"] == 3
        assert client.llen("clipdex") == 1  # one task message for the batch, not one per image
    finally:
        client.flushdb()


def test_uploading_for_workers_needs_no_model(
    home: tuple[Path, Path], poisoned: Path, photos: Path
) -> None:
    """The API accepts an upload and hands it to the workers without importing torch."""
    import redis

    broker = "redis://127.0.0.1:6379/13"
    script = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from clipdex.catalog import open_ready_runtime\n"
        "from clipdex.http import create_app\n"
        "from core.settings import load_settings\n"
        "settings = load_settings()\n"
        "runtime = open_ready_runtime(settings)\n"
        "with TestClient(create_app(settings, runtime)) as client:\n"
        "    data = open(sys.argv[1], 'rb').read()\n"
        "    answer = client.post('/v1/images', files={'files': ('up.jpg', data)})\n"
        "    print(answer.status_code, answer.json()['new'])\n"
        "runtime.close()\n"
        "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))\n"
    )
    client = redis.Redis.from_url(broker)
    client.flushdb()
    upload = sorted(photos.glob("*.jpg"))[12]
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, str(upload)],
            env=cli_env(home[0], PYTHONPATH=str(poisoned), CLIPDEX_BROKER_URL=broker),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:2] == ["202 1", "[]"]
        assert client.llen("clipdex") == 1
    finally:
        client.flushdb()
