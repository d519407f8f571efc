"""``clipdex export``: Parquet and NPZ of a version's indexed assets, equal to ``clipdex embed``
of the same files, one row per indexed asset, model identity in the file metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from sqlalchemy import func, select

import search.export as export_module
from clipdex.catalog import open_ready_runtime
from core.catalog.models import AssetIndexState, AssetState
from core.settings import load_settings
from ingest.run import ingest
from search.export import ExportRefused, export
from tests.conftest import PHOTOS, run_cli

PHOTO_COUNT = 12


@pytest.fixture(scope="module")
def exported_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    library = root / "library"
    (library / "copies").mkdir(parents=True)
    photos = sorted(PHOTOS.glob("*.jpg"))[:PHOTO_COUNT]
    for source in photos:
        shutil.copy2(source, library / source.name)
    shutil.copy2(photos[0], library / "copies" / photos[0].name)  # one asset, two paths
    home = root / "home"
    runtime = open_ready_runtime(load_settings(home=home, model="clipdex-tiny"))
    try:
        report = ingest(runtime, [library])
    finally:
        runtime.close()
    assert report.failed == 0 and report.encoded == PHOTO_COUNT, report
    return home, library


def indexed_count(home: Path) -> tuple[int, int]:
    runtime = open_ready_runtime(load_settings(home=home, model="clipdex-tiny"))
    try:
        version = runtime.live_version()
        with runtime.sessions() as session:
            count = session.scalar(
                select(func.count()).where(
                    AssetIndexState.index_version_id == version.id,
                    AssetIndexState.state == AssetState.INDEXED,
                )
            )
        return version.id, int(count or 0)
    finally:
        runtime.close()


@pytest.mark.tiny_real
@pytest.mark.corpus
def test_parquet_vectors_equal_embed_and_rows_equal_indexed(
    exported_home: tuple[Path, Path], tmp_path: Path
) -> None:
    home, library = exported_home
    out = tmp_path / "out" / "vectors.parquet"
    done = run_cli(home, "export", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    version_id, indexed = indexed_count(home)
    assert summary["rows"] == indexed == PHOTO_COUNT and summary["missing_points"] == 0
    assert summary["version"] == version_id and summary["format"] == "parquet"

    table = pq.read_table(out)
    assert table.num_rows == indexed
    assert table.column_names == [
        "id", "sha256", "paths", "format", "width", "height", "bytes", "taken_at", "metadata",
        "vector",
    ]  # fmt: skip
    meta = json.loads(table.schema.metadata[b"clipdex"])
    assert meta["index_version"] == version_id and meta["collection"]
    model = meta["model"]
    assert (model["architecture"], model["pretrained"]) == ("clipdex-tiny", "random")
    assert model["open_clip_version"] and model["preprocess"]["size"]
    rows = table.to_pylist()
    assert len({row["id"] for row in rows}) == indexed
    by_path = {path: row for row in rows for path in row["paths"]}
    assert len(by_path) == PHOTO_COUNT + 1  # the copy is a second path of one asset
    for row in rows:
        assert len(row["vector"]) == model["dim"] and len(row["sha256"]) == 64
        assert row["metadata"]["format"] == "JPEG" and row["metadata"]["width"] > 0

    files = sorted(library.glob("*.jpg"))
    args = [arg for path in files for arg in ("--image", str(path))]
    embedded = run_cli(home, "embed", *args, "--json")
    assert embedded.returncode == 0, embedded.stderr
    for item in json.loads(embedded.stdout):
        exported = np.asarray(by_path[str(Path(item["input"]).resolve())]["vector"], np.float32)
        reference = np.asarray(item["vector"], np.float32)
        cosine = float(exported @ reference / np.linalg.norm(exported) / np.linalg.norm(reference))
        assert 1 - cosine <= 1e-5, (item["input"], cosine)


@pytest.mark.tiny_real
@pytest.mark.corpus
def test_npz_round_trips_and_equals_parquet(
    exported_home: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _ = exported_home
    monkeypatch.setattr(export_module, "CHUNK", 5)  # several chunks, row groups and spool blocks
    runtime = open_ready_runtime(load_settings(home=home, model="clipdex-tiny"))
    try:
        version = runtime.live_version()
        npz = export(runtime, version, tmp_path / "v.npz")
        parquet = export(runtime, version, tmp_path / "v.parquet")
        with pytest.raises(ExportRefused, match=r"\.parquet or \.npz"):
            export(runtime, version, tmp_path / "v.csv")
    finally:
        runtime.close()
    assert npz.rows == parquet.rows == PHOTO_COUNT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npz", "v.parquet"]  # no leftovers

    with np.load(tmp_path / "v.npz", allow_pickle=False) as data:
        assert set(data.files) == {
            "id", "sha256", "paths", "format", "width", "height", "bytes", "taken_at",
            "metadata", "vector", "meta",
        }  # fmt: skip
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta"][0]))
    assert meta["index_version"] == version.id and meta["rows"] == PHOTO_COUNT
    assert meta["model"]["dim"] == arrays["vector"].shape[1]
    assert arrays["vector"].dtype == np.float32 and arrays["vector"].shape[0] == PHOTO_COUNT

    table = pq.read_table(tmp_path / "v.parquet")
    assert json.loads(table.schema.metadata[b"clipdex"])["model"] == meta["model"]
    assert table.column("id").to_pylist() == arrays["id"].tolist()
    assert table.column("sha256").to_pylist() == arrays["sha256"].tolist()
    assert table.column("paths").to_pylist() == [json.loads(p) for p in arrays["paths"]]
    assert table.column("metadata").to_pylist() == [json.loads(m) for m in arrays["metadata"]]
    vectors = np.asarray(table.column("vector").to_pylist(), np.float32)
    np.testing.assert_array_equal(vectors, arrays["vector"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.tiny_real
def test_cli_export_refuses_other_formats_and_empty_homes(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "home", "export", str(tmp_path / "x.csv"))
    assert done.returncode == 2 and done.stderr.startswith("clipdex: error:")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.tiny_real
def test_cli_export_to_a_place_it_cannot_write_is_one_line(tmp_path: Path, library: Path) -> None:
    """A folder named like the file, or a path under a file, gave raw errno messages."""
    home = tmp_path / "home"
    assert run_cli(home, "ingest", str(library)).returncode == 0
    (tmp_path / "out.parquet").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    for target, message in (
        (tmp_path / "out.parquet", "it is a folder"),
        (tmp_path / "a-file" / "x.parquet", f"cannot write in {tmp_path / 'a-file'}"),
    ):
        done = run_cli(home, "export", str(target))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("clipdex: error:") and message in done.stderr


@pytest.mark.tiny_real
def test_admin_tools_read_the_live_version_whatever_model_is_configured(
    tmp_path: Path, library: Path
) -> None:
    """verify, export and eval need the live version's own model, never CLIPDEX_MODEL: with
    another one configured they refused with a model mismatch (only --version worked)."""
    home = tmp_path / "home"
    assert run_cli(home, "ingest", str(library)).returncode == 0  # the tiny model
    other = {"CLIPDEX_MODEL": "ViT-B-32", "CLIPDEX_PRETRAINED": "random"}
    for args in (
        ["verify"],
        ["export", str(tmp_path / "x.parquet")],
        ["eval", "--self-check", "3"],
    ):
        done = run_cli(home, *args, settings=other)
        assert done.returncode == 0, (args, done.stderr)
    assert pq.read_table(tmp_path / "x.parquet").num_rows == 8
    refused = run_cli(home, "ingest", str(library), settings=other)
    assert refused.returncode == 2 and "was built with" in refused.stderr  # still guarded
