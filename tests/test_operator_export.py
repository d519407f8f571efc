"""``clipdex export`` writes what the README promises for each asset: id, sha256, paths, the
format, the displayed width and height, the file's size in bytes, the date taken (null when
unknown) and the vector, in Parquet and in NPZ alike."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from PIL import Image

from tests.conftest import PHOTOS, run_cli

pytestmark = [pytest.mark.tiny_real, pytest.mark.corpus]

TAKEN = datetime(2021, 7, 4, 15, 30, 0)
COLUMNS = ["id", "sha256", "paths", "format", "width", "height", "bytes", "taken_at"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two COCO photos: one as it is (no date), one saved with an EXIF date and turned a
    quarter by its EXIF orientation (displayed with width and height swapped)."""
    root = tmp_path_factory.mktemp("export-columns")
    library = root / "library"
    library.mkdir()
    plain_source, dated_source = sorted(PHOTOS.glob("*.jpg"))[:2]
    shutil.copy2(plain_source, library / "plain.jpg")
    with Image.open(dated_source) as image:
        exif = image.getexif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees to display
        exif.get_ifd(0x8769)[36867] = TAKEN.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
        image.save(library / "dated.jpg", exif=exif, quality=92)
    home = root / "home"
    done = run_cli(home, "ingest", str(library))
    assert done.returncode == 0, done.stderr
    for name in ("out.parquet", "out.npz"):
        done = run_cli(home, "export", str(root / name))
        assert done.returncode == 0, done.stderr
    return library, root / "out.parquet", root / "out.npz"


def expected(library: Path) -> dict[str, dict[str, object]]:
    facts: dict[str, dict[str, object]] = {}
    for name in ("plain.jpg", "dated.jpg"):
        path = library / name
        with Image.open(path) as image:
            width, height = image.size
        if name == "dated.jpg":
            width, height = height, width
        facts[str(path.resolve())] = {
            "format": "JPEG", "width": width, "height": height, "bytes": path.stat().st_size,
        }  # fmt: skip
    return facts


def test_parquet_has_the_asset_columns_with_their_values(exported: tuple[Path, Path, Path]) -> None:
    library, parquet, _ = exported
    table = pq.read_table(parquet)
    assert table.column_names[: len(COLUMNS)] == COLUMNS and table.column_names[-1] == "vector"
    rows = {row["paths"][0]: row for row in table.to_pylist()}
    facts = expected(library)
    assert set(rows) == set(facts)
    for path, fact in facts.items():
        assert {key: rows[path][key] for key in fact} == fact, path
    assert rows[str((library / "dated.jpg").resolve())]["taken_at"] == TAKEN.replace(tzinfo=UTC)
    assert rows[str((library / "plain.jpg").resolve())]["taken_at"] is None


def test_npz_has_the_same_columns_and_values(exported: tuple[Path, Path, Path]) -> None:
    library, parquet, npz = exported
    with np.load(npz, allow_pickle=False) as data:
        assert set(COLUMNS) <= set(data.files)
        arrays = {name: data[name] for name in data.files}
    assert arrays["width"].dtype == np.int64 and arrays["bytes"].dtype == np.int64
    assert arrays["taken_at"].dtype == np.dtype("datetime64[us]")
    facts = expected(library)
    table = pq.read_table(parquet).to_pylist()
    assert [row["id"] for row in table] == arrays["id"].tolist()
    for i, row in enumerate(table):
        fact = facts[row["paths"][0]]
        assert str(arrays["format"][i]) == fact["format"]
        assert (int(arrays["width"][i]), int(arrays["height"][i])) == (
            fact["width"],
            fact["height"],
        )
        assert int(arrays["bytes"][i]) == fact["bytes"]
        taken = arrays["taken_at"][i]
        if row["taken_at"] is None:
            assert np.isnat(taken)
        else:
            assert taken == np.datetime64(TAKEN, "us")
