"""`clipdex reindex --gate`: the swap happens only when the new version scores no worse than
the live one on the user's queries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import cli_env

pytestmark = pytest.mark.tiny_real


def clipdex(home: Path, pretrained: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(home, CLIPDEX_MODEL="ViT-B-32", CLIPDEX_PRETRAINED=str(pretrained))
    return subprocess.run(
        [sys.executable, "-m", "clipdex", *args], env=env, capture_output=True, text=True,
        check=False, timeout=600,
    )  # fmt: skip


def test_the_gate_accepts_an_equal_index_and_refuses_a_worse_one(
    tmp_path: Path, photos: Path, random_vit_checkpoint: Path
) -> None:
    import torch

    library, copies = tmp_path / "library", tmp_path / "queries"
    library.mkdir()
    copies.mkdir()
    lines = []
    for source in sorted(photos.glob("*.jpg"))[:12]:
        shutil.copy2(source, library / source.name)
        with Image.open(source) as image:  # a smaller, recompressed copy finds its original
            image.convert("RGB").resize((image.width * 3 // 4, image.height * 3 // 4)).save(
                copies / source.name, "JPEG", quality=60
            )
        original = str(library / source.name)
        lines.append(json.dumps({"image": str(copies / source.name), "expected": [original]}))
    gate = tmp_path / "queries.jsonl"
    gate.write_text("\n".join(lines) + "\n")

    same = tmp_path / "same.pt"  # the same weights under another name: an equal index
    shutil.copy2(random_vit_checkpoint, same)
    broken = tmp_path / "broken.pt"  # every image lands on the same vector: a worse index
    state = torch.load(random_vit_checkpoint, map_location="cpu")
    state["visual.proj"] = torch.zeros_like(state["visual.proj"])
    torch.save(state, broken)

    home = tmp_path / "home"
    first = clipdex(home, random_vit_checkpoint, "ingest", str(library))
    assert first.returncode == 0, first.stderr

    equal = clipdex(
        home, random_vit_checkpoint, "reindex", "--model", "ViT-B-32", "--pretrained",
        str(same), "--gate", str(gate), "--json",
    )  # fmt: skip
    assert equal.returncode == 0, equal.stderr
    report = json.loads(equal.stdout)
    assert report["gate"]["passed"] and report["state"] == "live"
    assert report["gate"]["new"]["ndcg@10"] == pytest.approx(report["gate"]["live"]["ndcg@10"])
    assert report["gate"]["live"]["recall@1"] >= 0.9

    worse = clipdex(
        home, same, "reindex", "--model", "ViT-B-32", "--pretrained", str(broken),
        "--gate", str(gate),
    )  # fmt: skip
    assert worse.returncode == 1
    assert "gate refused the swap" in worse.stderr
    assert "gate  new" in worse.stdout and "gate live" in worse.stdout
    listed = json.loads(clipdex(home, same, "index", "list", "--json").stdout)
    states = {Path(row["pretrained"]).name: row["state"] for row in listed}
    assert states["same.pt"] == "live" and states["broken.pt"] == "ready"
