"""Zero-shot tagging of a library: the best label of each asset under a folder lands in its
metadata (catalog and payload), where the metadata filter and keyword search find it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from core.catalog.models import Asset, Location
from core.runtime import Runtime
from core.store.base import SearchFilter
from ingest.run import ingest
from search.engine import SearchService
from search.query import BadQuery
from search.selection import selected_ids
from search.tagging import TagReport, TagRequest, tag_assets
from tests.conftest import cli_env

LABELS = ["beach", "city", "forest", "kitchen"]


def _tag(
    runtime: Runtime, folder: Path | None, key: str = "scene"
) -> tuple[TagReport, dict[str, Any]]:
    service = SearchService(runtime)
    target = service.target()
    ids = selected_ids(target.index, runtime.sessions, str(folder) if folder else None)
    request = TagRequest(LABELS, key, ["a photo of a {}.", "a picture of the {}."])
    report = tag_assets(target, runtime.sessions, request, ids, ["a photo of a {}."])
    with runtime.sessions() as session:
        metas = {
            path: meta
            for path, meta in session.execute(
                select(Location.path, Asset.meta).join(Asset, Asset.id == Location.asset_id)
            )
        }
    return report, metas


@pytest.mark.unit
def test_folder_assets_get_their_best_label_and_others_nothing(
    runtime: Runtime, library: Path
) -> None:
    ingest(runtime, [library])
    report, metas = _tag(runtime, library / "trips")
    inside = {path: meta for path, meta in metas.items() if "/trips/" in path}
    assert report.tagged == len(inside) == 4
    assert all(meta is None for path, meta in metas.items() if path not in inside)
    service = SearchService(runtime)
    with runtime.sessions() as session:
        ids = {
            path: asset_id
            for path, asset_id in session.execute(select(Location.path, Location.asset_id))
        }
    for path, meta in inside.items():
        assert set(meta) == {"scene", "scene_score"}
        # the same answer as classifying that one asset with the same prompt ensemble
        best = service.classify(
            LABELS, asset_id=ids[path], templates=["a photo of a {}.", "a picture of the {}."]
        )[0]
        assert meta["scene"] == best.label
        assert meta["scene_score"] == pytest.approx(best.probability, abs=1e-4)


@pytest.mark.unit
def test_tags_are_filterable_and_keyword_searchable_and_keep_other_metadata(
    runtime: Runtime, library: Path
) -> None:
    ingest(runtime, [library])
    _, index = runtime.live_index()
    with runtime.sessions() as session:
        first = session.scalars(select(Asset).order_by(Asset.id)).first()
        assert first is not None
        first.meta = {"album": "summer"}
        kept_id = first.id
        session.commit()
    _, metas = _tag(runtime, None)
    assert all(meta and meta["scene"] in LABELS for meta in metas.values())
    by_label: dict[str, set[str]] = {}
    for point in index.retrieve(list(index.iter_ids())):
        assert point.payload["meta"]["scene"] in LABELS  # the payload carries the new metadata
        by_label.setdefault(point.payload["meta"]["scene"], set()).add(point.id)
        if point.id == kept_id:
            assert point.payload["meta"]["album"] == "summer"
    probe = np.ones(index.dim, dtype=np.float32) / np.sqrt(index.dim)
    for label, ids in by_label.items():
        only = SearchFilter(metadata=(("scene", label),))
        assert index.count(only) == len(ids)
        assert {hit.id for hit in index.search(probe, 50, 0, only)} == ids
        assert {hit.id for hit in index.keyword_search([label], 50)} == ids


@pytest.mark.unit
def test_retagging_replaces_the_label_and_bad_input_is_refused(
    runtime: Runtime, library: Path
) -> None:
    ingest(runtime, [library])
    first, _ = _tag(runtime, None)
    again, _ = _tag(runtime, None)
    assert first.as_dict() == again.as_dict()
    target = SearchService(runtime).target()
    for request, message in (
        (TagRequest(LABELS, "has.dot"), "tag key"),
        (TagRequest(LABELS, ""), "tag key"),
        (TagRequest(["a", "a"], "k"), "distinct"),
        (TagRequest(LABELS, "k", ["no slot"]), "slot"),
    ):
        with pytest.raises(BadQuery, match=message):
            tag_assets(target, runtime.sessions, request, [], ["a photo of a {}."])


@pytest.mark.tiny_real
def test_cli_classify_folder_tag(tmp_path: Path, library: Path) -> None:
    home = tmp_path / "home"

    def clipdex(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clipdex", *args],
            env=cli_env(home), capture_output=True, text=True, check=False,
        )  # fmt: skip

    assert clipdex("ingest", str(library)).returncode == 0
    result = clipdex("classify", "--folder", str(library / "trips"), "--tag", "kind",
                     "dog", "boat", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["key"] == "kind" and report["tagged"] == 4
    assert set(report["labels"]) <= {"dog", "boat"} and sum(report["labels"].values()) == 4
    text = clipdex("classify", "--tag", "kind", "dog", "boat")
    assert text.returncode == 0 and text.stdout.startswith("tagged 8 assets with kind: ")
    for args, message in (
        (["--folder", str(library), "dog"], "--tag KEY"),
        (["--tag", "a.b", "dog"], "tag key is 1 to 64 letters, digits, '_' or '-', got 'a.b'"),
        (["--tag", "k", "--image", str(next(library.glob("*.jpg"))), "dog"], "--image"),
    ):
        bad = clipdex("classify", *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert bad.stderr.startswith("clipdex: error: ") and "Traceback" not in bad.stderr
