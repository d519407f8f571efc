"""``clipdex eval``: the metric math on hand-made rankings, the queries file, labelled
evaluation and the label-free self-check with the real tiny model on COCO photos."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipdex.catalog import open_ready_runtime
from core.runtime import Runtime
from core.settings import load_settings
from ingest.run import ingest
from search.evaluate import (
    EvalQuery,
    QueryFileError,
    evaluate,
    hit_at,
    load_queries,
    ndcg_at,
    reciprocal_rank,
    score,
    self_check,
)
from tests.conftest import PHOTOS, cli_env

PHOTO_COUNT = 20


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args],
        env=cli_env(home), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


# --- metric math ------------------------------------------------------------------------------


@pytest.mark.unit
def test_hit_reciprocal_rank_and_ndcg_on_hand_made_rankings() -> None:
    ranked = ["a", "b", "c", "d", "e"]
    assert hit_at(ranked, {"a"}, 1) == 1.0
    assert hit_at(ranked, {"c"}, 1) == 0.0 and hit_at(ranked, {"c"}, 5) == 1.0
    assert hit_at(ranked, {"z"}, 10) == 0.0
    assert reciprocal_rank(ranked, {"c", "e"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranked, {"z"}) == 0.0
    assert ndcg_at(ranked, {"a"}, 10) == pytest.approx(1.0)
    assert ndcg_at(ranked, {"b"}, 10) == pytest.approx(1 / math.log2(3))
    # two relevant at ranks 2 and 4; ideal puts them at 1 and 2
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at(ranked, {"b", "d"}, 10) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / ideal
    )
    # more relevant than the cutoff: the ideal is capped at k
    assert ndcg_at(["a", "b"], {"a", "b", "c"}, 2) == pytest.approx(1.0)
    assert ndcg_at(ranked, {"e"}, 3) == 0.0
    assert ndcg_at(ranked, set(), 10) == 0.0


@pytest.mark.unit
def test_score_means_over_queries() -> None:
    ten = [str(i) for i in range(10)]
    scores = score(
        [
            (ten, {"0"}),  # rank 1
            (ten, {"3"}),  # rank 4
            (ten, {"9"}),  # rank 10
            (ten, {"x"}),  # absent
        ]
    )
    assert scores.queries == 4
    assert scores.recall_at_1 == pytest.approx(0.25)
    assert scores.recall_at_5 == pytest.approx(0.5)
    assert scores.recall_at_10 == pytest.approx(0.75)
    assert scores.mrr == pytest.approx((1 + 1 / 4 + 1 / 10) / 4)
    expected_ndcg = (1 + 1 / math.log2(5) + 1 / math.log2(11)) / 4
    assert scores.ndcg_at_10 == pytest.approx(expected_ndcg)
    # results past rank 10 never count
    assert score([([*ten, "late"], {"late"})]).recall_at_10 == 0.0
    empty = score([])
    assert empty.queries == 0 and empty.mrr == 0.0


# --- the queries file ---------------------------------------------------------------------------


@pytest.mark.unit
def test_load_queries_resolves_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"text": "a dog", "expected": ["dogs/1.jpg", "3fa85f64-5717-4562-b3fc-2c963f66afa6"]}\n'
        "\n"
        '{"image": "pics/q.jpg", "expected": ["/abs/x.jpg"]}\n'
    )
    first, second = load_queries(path)
    assert first.text == "a dog" and first.line == 1 and first.base == tmp_path.resolve()
    assert first.expected == ("dogs/1.jpg", "3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert second.line == 3 and second.image == tmp_path.resolve() / "pics" / "q.jpg"


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        "[1, 2]",
        '{"text": "x"}',
        '{"text": "x", "expected": []}',
        '{"text": "x", "expected": [3]}',
        '{"expected": ["a"]}',
        '{"text": "x", "image": "y", "expected": ["a"]}',
        '{"text": "  ", "expected": ["a"]}',
        '{"text": "x", "expected": ["a"], "extra": 1}',
    ],
)
def test_malformed_line_names_its_number(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"text": "fine", "expected": ["a"]}\n' + bad + "\n")
    with pytest.raises(QueryFileError, match="line 2: "):
        load_queries(path)


@pytest.mark.unit
def test_cli_malformed_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"text": "fine", "expected": ["a"]}\n{"text": 5, "expected": ["a"]}\n')
    done = run_cli(tmp_path / "home", "eval", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 2" in lines[0] and lines[0].startswith("clipdex: error:")
    neither = run_cli(tmp_path / "home", "eval")
    assert neither.returncode == 2 and "--self-check" in neither.stderr


# --- real tiny model on COCO photos ---------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A home with PHOTO_COUNT COCO photos ingested by the real tiny model (random weights)."""
    root = tmp_path_factory.mktemp("eval")
    library = root / "library"
    library.mkdir()
    for source in sorted(PHOTOS.glob("*.jpg"))[:PHOTO_COUNT]:
        shutil.copy2(source, library / source.name)
    home = root / "home"
    runtime = open_ready_runtime(load_settings(home=home, model="clipdex-tiny"))
    try:
        report = ingest(runtime, [library])
    finally:
        runtime.close()
    assert report.failed == 0 and report.encoded == PHOTO_COUNT, report
    return home, sorted(library.glob("*.jpg"))


@pytest.fixture
def coco_runtime(coco_home: tuple[Path, list[Path]]) -> Iterator[Runtime]:
    runtime = open_ready_runtime(load_settings(home=coco_home[0], model="clipdex-tiny"))
    yield runtime
    runtime.close()


@pytest.mark.tiny_real
@pytest.mark.corpus
def test_self_check_finds_the_originals_with_random_weights(coco_runtime: Runtime) -> None:
    version = coco_runtime.live_version()
    report = self_check(coco_runtime, version, PHOTO_COUNT)
    assert report.samples == PHOTO_COUNT and report.unreadable == 0
    assert report.recall_at_1 >= 0.9, report
    assert 0.9 <= report.mrr <= 1.0
    # deterministic: the same sample and figures on a second run
    assert self_check(coco_runtime, version, PHOTO_COUNT) == report
    assert self_check(coco_runtime, version, 5).samples == 5


@pytest.mark.tiny_real
@pytest.mark.corpus
def test_evaluate_image_and_text_queries(
    coco_runtime: Runtime, coco_home: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    _, photos = coco_home
    version = coco_runtime.live_version()
    index = coco_runtime.index_of(version)
    some_id = sorted(index.iter_ids())[0]
    queries = [
        EvalQuery(line=1, expected=(str(photos[0]),), image=photos[0]),
        EvalQuery(line=2, expected=(photos[1].name,), image=photos[1], base=photos[1].parent),
        EvalQuery(line=3, expected=(some_id, "nowhere/missing.jpg"), text="a photo", base=tmp_path),
        EvalQuery(line=4, expected=("ghost.jpg",), text="nothing known", base=tmp_path),
    ]
    report = evaluate(coco_runtime, version, queries)
    assert report.version == version.id
    assert report.queries == 3 and report.skipped == 1
    assert report.unknown == ("line 3: nowhere/missing.jpg", "line 4: ghost.jpg")
    for value in (report.recall_at_1, report.recall_at_5, report.mrr, report.ndcg_at_10):
        assert 0.0 <= value <= 1.0
    # an image query finds itself first: 2 of the 3 scored queries are certain hits at rank 1
    assert report.recall_at_1 >= 2 / 3 - 1e-9
    assert report.recall_at_10 >= report.recall_at_5 >= report.recall_at_1


@pytest.mark.tiny_real
@pytest.mark.corpus
def test_cli_eval_and_self_check_json(coco_home: tuple[Path, list[Path]], tmp_path: Path) -> None:
    home, photos = coco_home
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "\n".join(
            json.dumps({"image": str(photo), "expected": [str(photo)]}) for photo in photos[:4]
        )
        + "\n"
        + json.dumps({"text": "a cat", "expected": ["not/there.jpg", str(photos[5])]})
        + "\n"
    )
    done = run_cli(home, "eval", str(queries), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["queries"] == 5 and result["skipped"] == 0
    assert result["recall@1"] >= 0.8 and set(result) >= {"recall@5", "recall@10", "mrr", "ndcg@10"}
    assert result["unknown"] == ["line 5: not/there.jpg"]
    text = run_cli(home, "eval", str(queries))
    assert text.returncode == 0 and "recall@10" in text.stdout and "nDCG@10" in text.stdout
    assert "not/there.jpg" in text.stderr

    checked = run_cli(home, "eval", "--self-check", "10", "--json")
    assert checked.returncode == 0, checked.stderr
    figures = json.loads(checked.stdout)
    assert figures["samples"] == 10 and figures["recall@1"] >= 0.9

    unknown_version = run_cli(home, "eval", "--self-check", "3", "--version", "999")
    assert unknown_version.returncode == 2 and "999" in unknown_version.stderr


@pytest.mark.unit
def test_an_expected_file_that_was_deleted_is_unknown_not_a_miss(
    runtime: Runtime, library: Path
) -> None:
    """A deleted file cannot be found: scoring it as a miss biased recall down unsaid."""
    ingest(runtime, [library])
    kept, deleted = sorted(library.rglob("*.jpg"))[:2]
    deleted.unlink()
    ingest(runtime, [library])  # its location is marked missing
    queries = [
        EvalQuery(line=1, expected=(str(kept),), image=kept),
        EvalQuery(line=2, expected=(str(deleted),), text="a photo"),
    ]
    report = evaluate(runtime, runtime.live_version(), queries)
    assert (report.queries, report.skipped) == (1, 1)
    assert report.unknown == (f"line 2: {deleted}",)


@pytest.mark.unit
def test_an_expected_file_that_was_moved_still_counts(runtime: Runtime, library: Path) -> None:
    """A queries file written before a move names the old path: its asset is still indexed."""
    ingest(runtime, [library])
    photo = sorted(library.rglob("*.jpg"))[0]
    moved = library / "moved" / photo.name
    moved.parent.mkdir()
    photo.rename(moved)
    ingest(runtime, [library])  # the old location is marked missing, the new one added
    report = evaluate(
        runtime, runtime.live_version(), [EvalQuery(line=1, expected=(str(photo),), image=moved)]
    )
    assert (report.queries, report.skipped, report.unknown) == (1, 0, ())


@pytest.mark.tiny_real
def test_a_self_check_with_nothing_readable_is_one_line_and_no_figures(
    tmp_path: Path, library: Path
) -> None:
    """It printed a table of zeros, then the error."""
    from tests.conftest import one_line_error, run_cli

    home = tmp_path / "home"
    assert run_cli(home, "ingest", str(library)).returncode == 0
    shutil.rmtree(library)  # every indexed file gone, not yet rescanned
    done = run_cli(home, "eval", "--self-check", "3")
    assert done.stdout == ""
    assert "no readable indexed image to check" in one_line_error(done)
