"""The CLI contract that scripts rely on: --json shapes, exit codes, clear errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env

pytestmark = pytest.mark.tiny_real


def clipdex(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=cli_env(home), capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    library = root / "library"
    shutil.copytree(photos, library, ignore=shutil.ignore_patterns("*.tsv"))
    (library / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    home = root / "home"
    result = clipdex(home, "ingest", str(library), "--json")
    assert result.returncode == 0, result.stderr
    return home, library


def test_ingest_json_has_every_count(ingested: tuple[Path, Path], photos: Path) -> None:
    home, library = ingested
    result = clipdex(home, "ingest", str(library), "--json")
    report = json.loads(result.stdout)
    expected = {"scanned", "new", "unchanged", "moved", "duplicates", "encoded", "failed"}
    assert expected | {"removed", "seconds"} <= report.keys()
    photo_count = len(list(photos.glob("*.jpg")))
    assert report["scanned"] == report["unchanged"] == photo_count + 1
    assert "RANDOM WEIGHTS" in report["model"]


def test_search_json_lists_hits(ingested: tuple[Path, Path]) -> None:
    home, library = ingested
    result = clipdex(home, "search", "a dog on the beach", "--limit", "5", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 5 and {"id", "score", "path"} <= hits[0].keys()
    assert all(Path(hit["path"]).parent == library for hit in hits)
    assert hits == sorted(hits, key=lambda hit: -hit["score"])
    assert "RANDOM WEIGHTS" in result.stderr


def test_search_paging_and_filters(ingested: tuple[Path, Path]) -> None:
    home, _ = ingested
    top = json.loads(clipdex(home, "search", "boats", "--limit", "6", "--json").stdout)
    page2 = json.loads(
        clipdex(home, "search", "boats", "--limit", "3", "--offset", "3", "--json").stdout
    )
    assert [h["id"] for h in page2] == [h["id"] for h in top[3:]]
    png_only = json.loads(clipdex(home, "search", "boats", "--format", "png", "--json").stdout)
    assert png_only == []  # the only PNG failed to decode
    wide = json.loads(clipdex(home, "search", "boats", "--min-width", "640", "--json").stdout)
    assert wide and all(hit["width"] >= 640 for hit in wide)


def test_search_by_image_finds_itself_first(ingested: tuple[Path, Path]) -> None:
    home, library = ingested
    photo = sorted(library.glob("*.jpg"))[3]
    hits = json.loads(clipdex(home, "search", "--image", str(photo), "--json").stdout)
    assert hits[0]["path"] == str(photo) and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_failures_and_status(ingested: tuple[Path, Path], photos: Path) -> None:
    home, library = ingested
    failures = json.loads(clipdex(home, "failures", "--json").stdout)
    assert failures == [
        {
            "path": str(library / "broken.png"),
            "stage": "decode",
            "reason": "not an image in an allowed format",
            "attempts": 1,
        }
    ]
    status = json.loads(clipdex(home, "status", "--json").stdout)
    photo_count = len(list(photos.glob("*.jpg")))
    assert status["indexed"] == status["points"] == photo_count
    assert status["failed"] == 1
    assert status["model"]["architecture"] == "clipdex-tiny" and status["model"]["dim"] == 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "x", "--limit", "0"], "limit must be between 1 and"),
        (["search", "x", "--taken-after", "yesterday"], "ISO date"),
        (["search"], "give either TEXT or --image"),
        (["search", "--image", "/no/such/file.jpg"], "cannot use that image"),
        (["ingest", "/no/such/folder"], "no such file or folder"),
    ],
)
def test_bad_input_gets_a_clear_error_not_a_traceback(
    ingested: tuple[Path, Path], args: list[str], message: str
) -> None:
    home, _ = ingested
    result = clipdex(home, *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_search_before_any_ingest_says_what_to_do(tmp_path: Path) -> None:
    result = clipdex(tmp_path / "empty", "status", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["points"] == 0
    result = clipdex(tmp_path / "empty", "failures", "--json")
    assert json.loads(result.stdout) == []


def test_a_different_model_on_the_same_home_is_refused(ingested: tuple[Path, Path]) -> None:
    home, _ = ingested
    result = subprocess.run(
        [sys.executable, "-m", "clipdex", "search", "x"],
        env=cli_env(home, CLIPDEX_MODEL="RN50", CLIPDEX_PRETRAINED="random"),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "Vectors of two models are never mixed" in result.stderr


def test_optimize_keeps_search_answers(ingested: tuple[Path, Path]) -> None:
    home, _ = ingested
    before = json.loads(clipdex(home, "search", "boats", "--limit", "5", "--json").stdout)
    result = clipdex(home, "optimize")
    assert result.returncode == 0 and "optimized" in result.stdout
    after = json.loads(clipdex(home, "search", "boats", "--limit", "5", "--json").stdout)
    assert [h["id"] for h in after] == [h["id"] for h in before]


def test_migrate_and_optimize_json(ingested: tuple[Path, Path], photos: Path) -> None:
    home, _ = ingested
    migrated = clipdex(home, "migrate", "--json")
    assert migrated.returncode == 0, migrated.stderr
    report = json.loads(migrated.stdout)
    assert report["at_head"] is True and re.fullmatch(r"\d{4}", report["revision"])
    assert report["from"] == report["revision"]  # ingest had created it at the newest
    optimized = clipdex(home, "optimize", "--json")
    assert optimized.returncode == 0, optimized.stderr
    numbers = json.loads(optimized.stdout)
    assert numbers["points"] == len(list(photos.glob("*.jpg"))) and numbers["seconds"] >= 0


def test_serve_json_prints_a_start_record_then_json_log_lines(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "clipdex", "serve", "--json", "--port", "0"],
        env=cli_env(tmp_path / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stderr is not None
        start = json.loads(server.stdout.readline())
        assert start["event"] == "start" and start["command"] == "serve"
        assert start["host"] == "127.0.0.1" and start["home"] == str(tmp_path / "home")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line, "serve stopped before it listened"
            entry = json.loads(line)  # every log line is one JSON object
            assert {"time", "level", "logger", "message"} <= entry.keys()
            if entry["message"].startswith("Uvicorn running on http://127.0.0.1:"):
                break
        else:
            pytest.fail("serve did not say where it listens")
    finally:
        server.terminate()
        server.wait(30)
