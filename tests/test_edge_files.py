"""Raising a built segment's filter-scan threshold in Qdrant's files: only ever up, the rest
of the file kept, and a file of another layout left as it is (see ``core.store.edge_files``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.store.edge_files import raise_scan_thresholds
from core.store.edge_tuning import EdgeTuning

pytestmark = pytest.mark.unit


def _segment(collection: Path, name: str, text: str) -> Path:
    config = collection / "segments" / name / "vector_index" / "hnsw_config.json"
    config.parent.mkdir(parents=True)
    config.write_text(text)
    return config


def test_thresholds_only_rise_and_other_layouts_are_left_alone(tmp_path: Path) -> None:
    graph = {"m": 16, "ef_construct": 100, "payload_m": 0}
    low = _segment(
        tmp_path,
        "low",
        json.dumps(graph | {"full_scan_threshold": 10, "indexed_vector_count": 1_000_000}),
    )
    small = _segment(
        tmp_path,
        "small",
        json.dumps(graph | {"full_scan_threshold": 100, "indexed_vector_count": 400}),
    )
    higher = _segment(
        tmp_path,
        "higher",
        json.dumps(graph | {"full_scan_threshold": 200_000, "indexed_vector_count": 1_000_000}),
    )
    other = _segment(tmp_path, "other", json.dumps(graph | {"threshold": 10}))
    broken = _segment(tmp_path, "broken", '{"full_scan_threshold": 10, "indexed_vec')
    untouched = {f: f.read_bytes() for f in (small, higher, other, broken)}

    assert raise_scan_thresholds(tmp_path, EdgeTuning().segment_scan) == 1
    assert json.loads(low.read_text()) == graph | {
        "full_scan_threshold": 125_000,  # an eighth of 1M is 125,000: the cap
        "indexed_vector_count": 1_000_000,
    }
    for config, before in untouched.items():  # 400 / 8 = 50 < 100; 200,000 kept; unknown keys
        assert config.read_bytes() == before
    assert not list(tmp_path.rglob("*.clipdex-partial"))
    assert raise_scan_thresholds(tmp_path, EdgeTuning().segment_scan) == 0  # idempotent


def test_the_share_is_capped() -> None:
    tuning = EdgeTuning()
    assert tuning.segment_scan(800_000) == 100_000
    assert tuning.segment_scan(4_000_000) == 125_000
    assert EdgeTuning(scan_share=0.0).segment_scan(1_000_000) == 0


def test_a_file_that_cannot_be_written_keeps_qdrants_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk (simulated: the replace is refused): the segment keeps Qdrant's threshold,
    its file stays whole, nothing is left beside it, and a warning says why."""
    text = json.dumps({"full_scan_threshold": 10, "indexed_vector_count": 1_000_000})
    config = _segment(tmp_path, "full-disk", text)

    def refuse(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("core.store.edge_files.os.replace", refuse)
    assert raise_scan_thresholds(tmp_path, EdgeTuning().segment_scan) == 0
    assert config.read_text() == text
    assert not list(tmp_path.rglob("*.clipdex-partial"))
    assert "No space left on device" in caplog.text
