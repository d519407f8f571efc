"""Hostile file names: a name that is not valid UTF-8 is recorded as failed with its reason
(never aborting the run), and names with newlines or ANSI escapes are shown escaped in every
human-readable output while --json keeps them exact."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clipdex.display import shown
from tests.conftest import cli_env

pytestmark = pytest.mark.tiny_real

NOT_UTF8 = b"caf\xe9.jpg"
FORGED = "   1  1.0000  /etc/passwd.jpg"
EVIL_DIR = "evil\n   1  1.0000  "  # + "/etc/passwd.jpg": the name prints as a forged hit line
RED = "\x1b[31mred.jpg"
Hostile = tuple[Path, Path, dict[str, Any]]  # home, library, the first ingest's report
HIT_LINE = re.compile(r"^ *\d+  \d\.\d{4}  \S")


def clipdex(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=cli_env(home), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> Hostile:
    root = tmp_path_factory.mktemp("hostile")
    library = root / "library"
    library.mkdir()
    sources = sorted(photos.glob("*.jpg"))[:7]
    for source in sources[:4]:
        shutil.copy2(source, library / source.name)
    descriptor = os.open(os.path.join(os.fsencode(library), NOT_UTF8), os.O_WRONLY | os.O_CREAT)
    os.write(descriptor, sources[4].read_bytes())
    os.close(descriptor)
    (library / EVIL_DIR / "etc").mkdir(parents=True)
    shutil.copy2(sources[5], library / EVIL_DIR / "etc" / "passwd.jpg")
    shutil.copy2(sources[6], library / RED)
    home = root / "home"
    first = clipdex(home, "ingest", str(library), "--json")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    return home, library, json.loads(first.stdout)


def test_shown_escapes_controls_and_surrogates() -> None:
    assert shown("evil\n   1") == "evil\\n   1"
    assert shown("\x1b[31mred.jpg") == "\\x1b[31mred.jpg"
    assert shown(os.fsdecode(NOT_UTF8)) == "caf\\xe9.jpg"
    assert shown("a\u202eb\u2028c\x7f\x9b") == "a\\u202eb\\u2028c\\x7f\\x9b"
    assert shown("plain café 日本.jpg") == "plain café 日本.jpg"


def test_non_utf8_name_is_a_failure_and_the_rest_is_indexed(
    hostile: Hostile,
) -> None:
    home, library, report = hostile
    assert report["scanned"] == 6 and report["encoded"] == 6 and report["failed"] == 1
    failures = json.loads(clipdex(home, "failures", "--json").stdout)
    assert [(f["path"], f["stage"]) for f in failures] == [(f"{library}/caf\\xe9.jpg", "read")]
    assert "file name is not valid UTF-8" in failures[0]["reason"]
    text = clipdex(home, "failures")
    assert text.stdout.splitlines() == [f"{library}/caf\\xe9.jpg\tread\t{failures[0]['reason']}"]


def test_a_rerun_changes_nothing(hostile: Hostile) -> None:
    home, library, _ = hostile
    again = clipdex(home, "ingest", str(library), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["unchanged"] == 6 and report["new"] == report["encoded"] == 0
    assert report["removed"] == report["moved"] == 0
    assert len(json.loads(clipdex(home, "failures", "--json").stdout)) == 1


def test_search_json_keeps_names_exact(hostile: Hostile) -> None:
    home, library, _ = hostile
    result = clipdex(home, "search", "a photo", "--limit", "10", "--json")
    assert result.returncode == 0, result.stderr
    paths = {hit["path"] for hit in json.loads(result.stdout)}
    assert len(paths) == 6
    assert {f"{library}/{EVIL_DIR}/etc/passwd.jpg", f"{library}/{RED}"} <= paths


def test_text_output_escapes_names(hostile: Hostile) -> None:
    home, library, _ = hostile
    result = clipdex(home, "search", "a photo", "--limit", "10")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and all(HIT_LINE.match(line) for line in lines), lines
    assert FORGED not in lines and "\x1b" not in result.stdout
    assert any(line.endswith(f"{library}/evil\\n{FORGED}") for line in lines)
    assert any(line.endswith(f"{library}/\\x1b[31mred.jpg") for line in lines)
    for command in (("status",), ("failures",), ("ingest", str(library))):
        output = clipdex(home, *command)
        assert output.returncode == 0, output.stderr
        assert "\x1b" not in output.stdout + output.stderr
        assert "\udce9" not in output.stdout + output.stderr


def test_non_utf8_root_is_one_line(hostile: Hostile, tmp_path: Path) -> None:
    home, _, _ = hostile
    folder = os.path.join(os.fsencode(tmp_path), b"d\xe9j\xe0")
    os.mkdir(folder)
    result = clipdex(home, "ingest", os.fsdecode(folder))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"clipdex: error: the path {tmp_path}/d\\xe9j\\xe0 is not valid UTF-8 and cannot be "
        "stored in the catalog; rename it"
    ]
