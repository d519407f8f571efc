"""A run killed with SIGKILL and started again finishes without duplicates or re-encoding."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import cli_env

pytestmark = pytest.mark.tiny_real


def derived_library(photos: Path, root: Path) -> int:
    """Three distinct files per photo (different JPEG qualities), so the run lasts a while."""
    root.mkdir()
    count = 0
    for source in sorted(photos.glob("*.jpg")):
        with Image.open(source) as image:
            for quality in (70, 85, 95):
                image.save(root / f"{source.stem}-q{quality}.jpg", quality=quality)
                count += 1
    return count


def indexed_count(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            row = connection.execute(
                "SELECT count(*) FROM asset_index_states WHERE state = 'indexed'"
            ).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0])


def test_kill_9_then_resume(photos: Path, tmp_path: Path) -> None:
    total = derived_library(photos, tmp_path / "library")
    home = tmp_path / "home"
    env = cli_env(home, CLIPDEX_BATCH_SIZE="4")
    command = [sys.executable, "-m", "clipdex", "ingest", str(tmp_path / "library"), "--json"]
    victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while indexed_count(home / "catalog.db") < total // 4:
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_before = indexed_count(home / "catalog.db")
    assert 0 < done_before < total

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["encoded"] + report["reused"] == total - done_before
    assert report["reused"] <= 4  # at most the one batch upserted but not yet committed

    status = subprocess.run(
        [sys.executable, "-m", "clipdex", "status", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    counts = json.loads(status.stdout)
    assert counts["indexed"] == counts["points"] == counts["assets"] == total
    assert counts["pending"] == 0
    # The killed run does not claim to be running forever: status closed it as killed.
    assert counts["unfinished_runs"] == 0
    runs = sqlite3.connect(home / "catalog.db").execute(
        "SELECT status FROM ingest_runs ORDER BY id"
    )
    assert [row[0] for row in runs] == ["killed", "done"]
