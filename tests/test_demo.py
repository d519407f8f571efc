"""The README's main job runs on the library that ships in the repository, offline."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.tiny_real

SAMPLES = REPO / "samples" / "photos"


def test_the_demo_library_is_small_and_every_photo_is_attributed() -> None:
    photos = sorted(p.name for p in SAMPLES.glob("*.jpg"))
    with (SAMPLES / "MANIFEST.tsv").open(encoding="utf-8") as manifest:
        rows = list(csv.DictReader(manifest, delimiter="\t"))
    assert len(photos) >= 20
    assert sorted(row["file"] for row in rows) == photos
    assert {row["licence"] for row in rows} == {"CC BY 2.0"}
    assert all(row["flickr_url"].startswith("http") and row["changes"] for row in rows)
    assert sum(p.stat().st_size for p in SAMPLES.iterdir()) < 2 * 1024 * 1024


def test_the_demo_runs_offline_on_the_shipped_library(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPDEX_")}
    env["CLIPDEX_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [str(REPO / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "24 scanned: 24 new" in result.stdout
    assert result.stdout.count(str(SAMPLES)) == 5  # five search hits from the shipped photos
    assert "indexed 24" in result.stdout
    # Offline, the fallback to the tiny model is announced once, in one line.
    assert result.stderr.count("falling back to CLIPDEX_MODEL=clipdex-tiny") == 1
