"""Arguments a shell mangles: an empty path (what an unset variable leaves, ``clipdex ingest
"$PHOTOS"``) is refused instead of read as the working folder, and a path or filter with a
byte that is not UTF-8 gets an error with exit 2 instead of a traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.tiny_real

NOT_UTF8 = os.fsdecode(b"/tmp/caf\xe9")  # what Python makes of a Latin-1 byte in argv


@pytest.mark.corpus
def test_an_empty_path_is_refused_not_read_as_the_working_folder(
    tmp_path: Path, photos: Path
) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    shutil.copy2(sorted(photos.glob("*.jpg"))[0], cwd / "photo.jpg")
    for args in (("ingest", ""), ("library", "add", ""), ("search", "--folder", "", "cat")):
        done = run_cli(home, *args, cwd=cwd)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "the path is empty (an unset shell variable?)" in " ".join(done.stderr.split())
    status = json.loads(run_cli(home, "status", "--json", cwd=cwd).stdout)
    assert status["assets"] == 0  # the working folder was not ingested
    assert run_cli(home, "library", "add", ".", cwd=cwd).returncode == 0
    removed = run_cli(home, "library", "remove", "", cwd=cwd)
    assert removed.returncode == 2 and removed.stderr.startswith("clipdex: error: no library")
    listed = json.loads(run_cli(home, "library", "list", "--json", cwd=cwd).stdout)
    assert [library["path"] for library in listed] == [str(cwd)]  # still there


@pytest.mark.parametrize("kind", ["symlink-loop", "name-too-long"])
def test_a_path_the_system_cannot_take_is_one_line(tmp_path: Path, kind: str) -> None:
    """A symlink loop, a name longer than the file system allows: one line naming it."""
    if kind == "symlink-loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        path, said = str(tmp_path / "a"), "ymlink loop"
    else:
        path, said = str(tmp_path / ("x" * 300)), "File name too long"
    for args in (("ingest", path), ("library", "add", path), ("duplicates", "--folder", path)):
        done = run_cli(tmp_path / "home", *args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
        if args[0] != "duplicates":  # that one first says nothing was ingested yet
            assert said in done.stderr, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("search", "--folder", NOT_UTF8, "cat"),
        ("search", "--where", f"album={NOT_UTF8}", "cat"),
        ("search", "--camera-make", NOT_UTF8, "cat"),
        ("duplicates", "--folder", NOT_UTF8),
        ("classify", "cat", "dog", "--tag", "kind", "--folder", NOT_UTF8),
        ("tag", f"{NOT_UTF8}.jpg", "album=x"),
    ],
    ids=[
        "search-folder",
        "search-where",
        "search-camera",
        "duplicates-folder",
        "classify-folder",
        "tag-path",
    ],
)
def test_a_filter_that_is_not_utf8_is_an_error_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    done = run_cli(tmp_path / "home", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "valid UTF-8" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "greater than or equal to 1"),  # Celery's 0 is "every CPU"
        (["--concurrency", "-3"], "greater than or equal to 1"),
        (["--loglevel", "NOPE"], "'NOPE' is not one of DEBUG, INFO"),
        (["--gpus", ""], "--gpus is empty"),
        (["--concurrency", "2"], "cannot share the embedded vector store"),
    ],
)
def test_worker_options_it_cannot_run_with_are_refused_before_it_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Each was a Celery traceback after the slow start-up check, or (several pool processes
    on the embedded store) a worker that looked ready, then stopped with exit 0."""
    broker = "redis://127.0.0.1:1/0"  # never reached: refused before
    done = run_cli(tmp_path / "home", "worker", *args, CLIPDEX_BROKER_URL=broker, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert message in " ".join(done.stderr.replace("│", " ").split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "ViT-Nope"], "unknown model architecture 'ViT-Nope'"),
        (["--model", "ViT-B-32", "--pretrained", "nosuchtag"], "no pretrained weights"),
        (["--model", "clipdex-tiny", "--max-drop", "nan"], "--max-drop"),
        (["--model", "clipdex-tiny", "--max-drop", "5"], "--max-drop"),
        (["--model", "clipdex-tiny", "--max-drop", "-1"], "--max-drop"),
    ],
)
def test_reindex_refuses_a_misspelt_model_or_a_bad_gate_bound_at_once(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """A misspelt tag was "not in the local cache and huggingface.co cannot be reached";
    --max-drop took NaN, negatives and 5 (the HTTP API refuses them)."""
    done = run_cli(tmp_path / "home", "reindex", *args, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert message in " ".join(done.stderr.replace("│", " ").split())
