"""One Celery worker vs inline ingest, same images, model and batch size, in one run.

    .venv/bin/python -m bench.worker_bench [--variants 4] [--batch-size 32]

Needs the machine's Redis (127.0.0.1:6379, database 8 is emptied) and PostgreSQL (a fresh
database per side). Prints both wall times from the start of `ingest` until every image is
indexed, their ratio, and the broker overhead per batch: the time to send one task message,
and the extra wall time per batch of the worker path.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from bench.ingest_bench import derive_variants
from clipdex.catalog import open_ready_runtime
from core.settings import load_settings
from ingest.run import ingest
from workers.app import make_celery, sender

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "corpus" / "photos"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BROKER = "redis://127.0.0.1:6379/8"


def fresh_database() -> str:
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    name = f"clipdex_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES.rsplit("/", 1)[0] + "/" + name


def indexed(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(
            text("SELECT count(*) FROM asset_index_states WHERE state IN ('indexed', 'failed')")
        ).scalar()
    engine.dispose()
    return int(count or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--task-batch-size", type=int, default=256)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="clipdex-worker-bench-"))
    files = derive_variants(sorted(PHOTOS.glob("*.jpg")), scratch / "images", args.variants)
    common = {"model": "ViT-B-32", "pretrained": "random", "batch_size": args.batch_size}
    print(
        f"{len(files)} images, ViT-B-32 (random weights), encoder batch {args.batch_size}, "
        f"task batch {args.task_batch_size}, 2-core CPU"
    )

    inline = load_settings(home=scratch / "inline", database_url=fresh_database(), **common)
    runtime = open_ready_runtime(inline)
    _ = runtime.encoder.identity  # model loading is not part of either measurement
    started = time.perf_counter()
    ingest(runtime, [scratch / "images"])
    inline_s = time.perf_counter() - started
    runtime.close()

    redis.Redis.from_url(BROKER).flushdb()
    database = fresh_database()
    distributed = load_settings(
        home=scratch / "worker", database_url=database, broker_url=BROKER,
        task_batch_size=args.task_batch_size, **common,
    )  # fmt: skip
    env = {**os.environ, "CLIPDEX_HOME": str(scratch / "worker"), "CLIPDEX_DATABASE_URL": database,
           "CLIPDEX_BROKER_URL": BROKER, "CLIPDEX_MODEL": "ViT-B-32",
           "CLIPDEX_PRETRAINED": "random", "CLIPDEX_BATCH_SIZE": str(args.batch_size),
           "CLIPDEX_TASK_BATCH_SIZE": str(args.task_batch_size)}  # fmt: skip
    log = (scratch / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "clipdex", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        while b"worker child ready" not in (scratch / "worker.log").read_bytes():
            time.sleep(0.2)  # the worker's model is loaded before timing starts
        runtime = open_ready_runtime(distributed)
        _ = runtime.encoder.identity  # the client checks the model too; load it before timing
        send = sender(make_celery(distributed))
        sends: list[float] = []

        def timed_send(version_id: int, ids: list[str]) -> None:
            began = time.perf_counter()
            send(version_id, ids)
            sends.append(time.perf_counter() - began)

        started = time.perf_counter()
        ingest(runtime, [scratch / "images"], dispatch=timed_send)
        while indexed(database) < len(files):
            time.sleep(0.05)
        worker_s = time.perf_counter() - started
        runtime.close()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    batches = len(sends)
    print(f"  inline ingest         {inline_s:6.2f} s  ({len(files) / inline_s:5.1f} img/s)")
    print(f"  one worker            {worker_s:6.2f} s  ({len(files) / worker_s:5.1f} img/s)")
    print(f"  worker / inline throughput = {inline_s / worker_s:.1%}")
    print(f"  broker: send per batch {1000 * sum(sends) / batches:.2f} ms over {batches} batches; "
          f"extra wall per batch {1000 * (worker_s - inline_s) / batches:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
