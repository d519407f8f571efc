"""Issue 8's zero downtime on an embedded home: `clipdex reindex` runs inside a real `clipdex serve`
while several threads search it. No request fails, every answer names one index version, each
thread sees the version switch once, the new answers equal a fresh index built with the new
model, and `clipdex index activate OLD` (through the server) switches them back."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from clipdex.catalog import open_ready_runtime
from core.encoder import ModelSpec, OpenClipEncoder
from core.settings import load_settings
from ingest.run import ingest
from search.engine import SearchService
from tests.conftest import cli_env
from tests.home_serve import clipdex, serving

QUERY = "a red bicycle"
THREADS = 3
Seen = tuple[int, str | None, int | None, list[str]]


def _library(photos: Path, root: Path) -> Path:
    """The COCO photos and derived images (rotated, resized: other bytes, other assets)."""
    root.mkdir()
    jpgs = sorted(photos.glob("*.jpg"))
    for source in jpgs:
        shutil.copy2(source, root / source.name)
    for source in jpgs[:30]:
        with Image.open(source) as image:
            image.rotate(90, expand=True).save(root / f"r-{source.name}", "JPEG")
            image.resize((image.width // 2, image.height // 2)).save(root / f"s-{source.name}")
    return root


def _fresh_ranking(library: Path, home: Path, checkpoint: Path) -> list[str]:
    """What a new home built with the new model answers (in this process)."""
    settings = load_settings(
        home=home, model="ViT-B-32", pretrained=str(checkpoint), device="cpu", batch_size=8
    )
    runtime = open_ready_runtime(
        settings, encoder=OpenClipEncoder(ModelSpec.from_settings(settings))
    )
    try:
        ingest(runtime, [library])
        return [hit.id for hit in SearchService(runtime).text(QUERY)]
    finally:
        runtime.close()


def _search(client: httpx.Client) -> Seen:
    response = client.get("/v1/search", params={"q": QUERY})
    body = response.json() if response.status_code == 200 else {}
    index = (body.get("index") or {}).get("id")
    ids = [hit["id"] for hit in body.get("hits", [])]
    return response.status_code, response.headers.get("X-Clipdex-Index"), index, ids


@pytest.mark.tiny_real
def test_reindex_inside_serve_switches_once_with_no_failed_search(
    tmp_path: Path, photos: Path, random_vit_checkpoint: Path
) -> None:
    library = _library(photos, tmp_path / "library")
    images = len(list(library.iterdir()))
    expected_new = _fresh_ranking(library, tmp_path / "fresh", random_vit_checkpoint)
    home = tmp_path / "home"
    env = cli_env(home, CLIPDEX_DEVICE="cpu", CLIPDEX_BATCH_SIZE="8")
    clipdex(env, "ingest", str(library))

    with serving(home, env, tmp_path / "serve.log") as (_, server):
        client = httpx.Client(base_url=server.url, timeout=120)
        old = client.get("/v1/index").json()["id"]
        seen: list[list[Seen]] = [[] for _ in range(THREADS)]
        stop = threading.Event()

        def searching(out: list[Seen]) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as own:
                while not stop.is_set():
                    out.append(_search(own))

        threads = [threading.Thread(target=searching, args=(s,)) for s in seen]
        for thread in threads:
            thread.start()
        try:
            done = clipdex(env, "reindex", "--model", "ViT-B-32", "--pretrained",
                           str(random_vit_checkpoint), "--json")  # fmt: skip
            report = json.loads(done.stdout)
            new = report["version"]
            # Every thread goes on until it has seen the new version a few times.
            deadline = time.monotonic() + 120
            while any(sum(1 for s in out if s[2] == new) < 3 for out in seen):
                assert time.monotonic() < deadline, "the searches never reached the new version"
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert report["swapped"] and new != old
        assert report["indexed"] == report["points"] == images
        old_ids = next(ids for out in seen for _, _, index, ids in out if index == old)
        for out in seen:
            assert out and all(status == 200 for status, *_ in out), out[-1]
            assert all(header == str(index) for _, header, index, _ in out)
            versions = [index for _, _, index, _ in out]
            switches = sum(1 for a, b in itertools.pairwise(versions) if a != b)
            assert versions[0] == old and versions[-1] == new and switches == 1
            assert all(ids == expected_new for _, _, index, ids in out if index == new)
            assert all(ids == old_ids for _, _, index, ids in out if index == old)
        assert expected_new != old_ids  # the two models rank differently: the check has teeth

        # Rollback through the server: it answers only once it searches the old version.
        activated = clipdex(env, "index", "activate", str(old)).stdout
        assert activated.startswith(f"index version {old} is live")
        status, header, index, ids = _search(client)
        assert (status, header, index, ids) == (200, str(old), old, old_ids)
        client.close()
