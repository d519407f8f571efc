"""Library-wide near duplicates: re-saves, resizes and light crops of one photo are one group,
distinct photos are in none; the CLI prints the groups, largest first."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.runtime import Runtime
from ingest.run import ingest
from search.duplicates import BadThreshold, find_duplicates, similar_pairs
from search.selection import selected_ids
from tests.conftest import cli_env


def _derive(photo: Path, folder: Path) -> list[Path]:
    """A JPEG re-save at low quality, a half-size PNG and a 5 % crop of ``photo``."""
    image = Image.open(photo).convert("RGB")
    width, height = image.size
    derived = [folder / f"{photo.stem}-q40.jpg", folder / f"{photo.stem}-half.png",
               folder / f"{photo.stem}-crop.jpg"]  # fmt: skip
    image.save(derived[0], quality=40)
    image.resize((width // 2, height // 2)).save(derived[1])
    image.crop((width // 20, height // 20, width - width // 20, height - height // 20)).save(
        derived[2], quality=90
    )
    return derived


@pytest.fixture
def with_copies(tmp_path: Path, photos: Path) -> tuple[Path, list[set[str]]]:
    """24 photos, three of them with three derived copies each in another folder."""
    library = tmp_path / "library"
    (library / "derived").mkdir(parents=True)
    originals = sorted(photos.glob("*.jpg"))[:24]
    for photo in originals:
        shutil.copy2(photo, library / photo.name)
    groups = []
    for photo in originals[:3]:
        copies = _derive(library / photo.name, library / "derived")
        groups.append({str(library / photo.name), *map(str, copies)})
    return library, groups


@pytest.mark.unit
def test_derived_copies_group_with_their_original_and_nothing_else(
    runtime: Runtime, with_copies: tuple[Path, list[set[str]]]
) -> None:
    library, expected = with_copies
    ingest(runtime, [library])
    _, index = runtime.live_index()
    report = find_duplicates(index, 0.93, index.iter_ids())
    assert report.compared == 24 + 9
    assert sorted(map(sorted, ({m.path for m in g.members} for g in report.groups))) == sorted(
        map(sorted, expected)
    )
    assert all(0.93 <= m.score <= 1.0 for g in report.groups for m in g.members)
    # a stricter threshold splits the crops off, it never merges distinct photos
    strict = find_duplicates(index, 0.999, index.iter_ids())
    assert all(any({m.path for m in g.members} <= e for e in expected) for g in strict.groups)


@pytest.mark.unit
def test_folder_limits_what_is_compared(
    runtime: Runtime, with_copies: tuple[Path, list[set[str]]]
) -> None:
    library, _ = with_copies
    ingest(runtime, [library])
    _, index = runtime.live_index()

    def under(folder: Path) -> list[str]:
        return list(selected_ids(index, runtime.sessions, str(folder)))

    derived = find_duplicates(index, 0.93, under(library / "derived"))
    assert derived.compared == 9
    assert all(Path(m.path).parent.name == "derived" for g in derived.groups for m in g.members)
    assert derived.groups and len(derived.groups) <= 3
    assert find_duplicates(index, 0.93, under(library / "deriv")).compared == 0  # not a prefix
    assert find_duplicates(index, 0.93, under(library)).compared == 33


@pytest.mark.unit
def test_groups_are_largest_first_and_blocks_give_every_pair_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((50, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    full = set((i, j) for i, j, _ in similar_pairs(vectors, 0.3))
    monkeypatch.setattr("search.duplicates.BLOCK_SCORES", 7 * 50)  # blocks of 7 rows
    blocked = [(i, j) for i, j, _ in similar_pairs(vectors, 0.3)]
    scores = vectors @ vectors.T
    expected = {(i, j) for i in range(50) for j in range(i + 1, 50) if scores[i, j] >= 0.3}
    assert full == set(blocked) == expected and len(blocked) == len(expected)


@pytest.mark.unit
def test_a_threshold_outside_the_cosine_range_is_refused(runtime: Runtime, library: Path) -> None:
    ingest(runtime, [library])
    _, index = runtime.live_index()
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(BadThreshold, match=r"\(0, 1\]"):
            find_duplicates(index, bad, index.iter_ids())


@pytest.mark.tiny_real
def test_cli_lists_groups_with_paths(tmp_path: Path, photos: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    originals = sorted(photos.glob("*.jpg"))[:6]
    for photo in originals:
        shutil.copy2(photo, library / photo.name)
    # lossless re-saves decode to the same pixels: the same vector under any model
    for photo in originals[:2]:
        Image.open(photo).save(library / f"{photo.stem}-copy.png")
    Image.open(originals[0]).save(library / f"{originals[0].stem}-copy.bmp")
    home = tmp_path / "home"

    def clipdex(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clipdex", *args],
            env=cli_env(home), capture_output=True, text=True, check=False,
        )  # fmt: skip

    assert clipdex("ingest", str(library)).returncode == 0
    result = clipdex("duplicates", "--threshold", "0.99999", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    groups = [[Path(m["path"]).name for m in group["members"]] for group in report["groups"]]
    first, second = originals[0].stem, originals[1].stem
    assert groups == [
        [f"{first}-copy.bmp", f"{first}-copy.png", f"{first}.jpg"],
        [f"{second}-copy.png", f"{second}.jpg"],
    ]
    assert report["compared"] == 9 and [g["size"] for g in report["groups"]] == [3, 2]
    text = clipdex("duplicates", "--threshold", "0.99999")
    assert text.returncode == 0
    assert str(library / f"{first}-copy.bmp") in text.stdout and "3 images" in text.stdout
    bad = clipdex("duplicates", "--threshold", "2")
    assert bad.returncode == 2 and bad.stderr.startswith("clipdex: error: ")
    assert "Traceback" not in bad.stderr
