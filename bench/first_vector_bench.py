"""Time to the first encoded image: how long `clipdex ingest` makes a user wait before the
first photo is in, and where that time goes.

    .venv/bin/python -m bench.first_vector_bench [--model ViT-B-32] [--batch-sizes 32 256]

Each round is a fresh Python process, as a user's `clipdex ingest FOLDER` is: interpreter and
imports, catalog and store opened, the scan and hashing, the model loaded, then the first batch
decoded, encoded and stored (the first ``advance`` of the "encoding" phase). Printed per batch
size, median of ``--rounds``, each stage's end counted from the process start; the last column
is when all 306 photos were stored, so the wait for the first batch shows beside the whole
run. Random weights: the same arithmetic as the pretrained model, nothing downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "corpus" / "photos"

CHILD = r"""
import json, sys, time
started = float(sys.argv[1])
marks = {"python up": time.time() - started}
from clipdex.catalog import open_ready_runtime
from core.settings import load_settings
from ingest.run import ingest
marks["imports"] = time.time() - started

class Marks:
    phase_name = ""
    encoded = 0
    def phase(self, name, total):
        self.phase_name = name
        marks.setdefault(f"{name} begins", time.time() - started)
    def advance(self, count):
        if self.phase_name == "encoding":
            if not self.encoded:
                marks["first batch stored"] = time.time() - started
            self.encoded += count

settings = load_settings()
runtime = open_ready_runtime(settings)
marks["catalog and store open"] = time.time() - started
progress = Marks()
report = ingest(runtime, [__import__("pathlib").Path(sys.argv[2])], progress)
marks["all stored"] = time.time() - started
marks["images"] = progress.encoded
runtime.close()
print(json.dumps(marks))
"""
SHOWN = ("imports", "catalog and store open", "encoding begins", "first batch stored", "all stored")


def one_round(folder: Path, home: Path, model: str, batch: int) -> dict[str, float]:
    shutil.rmtree(home, ignore_errors=True)
    env = {
        **os.environ, "CLIPDEX_HOME": str(home), "CLIPDEX_MODEL": model,
        "CLIPDEX_PRETRAINED": "random", "CLIPDEX_BATCH_SIZE": str(batch),
        "HF_HUB_OFFLINE": "1",
    }  # fmt: skip
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, repr(started), str(folder)],
        env=env, capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    marks: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{platform.platform()}, {os.cpu_count()} cores; model {args.model} (random weights)")
    scratch = Path(tempfile.mkdtemp(prefix="clipdex-first-"))
    try:
        folder = scratch / "photos"
        folder.mkdir()
        photos = sorted(PHOTOS.glob("*.jpg"))
        for copy in range(6):  # 306 distinct files: enough for a full batch of 256
            for photo in photos:
                data = photo.read_bytes() + copy.to_bytes(2, "big")  # distinct bytes, same image
                (folder / f"{photo.stem}-{copy}.jpg").write_bytes(data)
        rounds: dict[int, list[dict[str, float]]] = {b: [] for b in args.batch_sizes}
        for _ in range(args.rounds):  # batch sizes take turns: each sees the same load
            for batch in args.batch_sizes:
                rounds[batch].append(one_round(folder, scratch / "home", args.model, batch))
        print(f"{'batch':>5} " + " ".join(f"{name:>22}" for name in SHOWN))
        for batch, marks in rounds.items():
            cells = [statistics.median(m[name] for m in marks) for name in SHOWN]
            print(f"{batch:>5} " + " ".join(f"{cell:>20.2f} s" for cell in cells))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
