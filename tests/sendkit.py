"""Plumbing of the send tests: pending rows seeded straight into a catalog, a recording
``SendBatch``, and the task messages Celery left in a Redis list."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.models import Base

QUEUE = "clipdex"  # the Redis list Celery's transport keeps the clipdex queue in


def seed_pending(
    sessions: sessionmaker[Session],
    version_id: int,
    count: int,
    missing: bool = False,
    updated_at: datetime | None = None,
) -> list[str]:
    """``count`` pending assets of ``version_id``, each with one path (``missing`` or live);
    their ids, sorted. No files: sending looks at the catalog only."""
    tables = Base.metadata.tables
    ids = sorted(str(uuid.uuid4()) for _ in range(count))
    state: dict[str, Any] = {"index_version_id": version_id, "state": "pending", "attempts": 0}
    if updated_at is not None:
        state["updated_at"] = updated_at
    with sessions() as session:
        session.execute(
            insert(tables["assets"]),
            [{"id": id_, "sha256": id_.replace("-", "") * 2, "size_bytes": 1} for id_ in ids],
        )
        session.execute(
            insert(tables["locations"]),
            [
                {"path": f"/seeded/{id_}.jpg", "asset_id": id_, "size_bytes": 1, "mtime_ns": 0,
                 "missing": missing}
                for id_ in ids
            ],
        )  # fmt: skip
        session.execute(
            insert(tables["asset_index_states"]), [{"asset_id": i, **state} for i in ids]
        )
        session.commit()
    return ids


class Recorder:
    """A thread-safe ``SendBatch`` that keeps every message it was given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[list[str]] = []

    def __call__(self, _version_id: int, asset_ids: list[str]) -> None:
        with self._lock:
            self.messages.append(list(asset_ids))

    @property
    def ids(self) -> list[str]:
        with self._lock:
            return [asset for message in self.messages for asset in message]


def queued_messages(client: redis.Redis) -> list[tuple[int, list[str]]]:
    """(version id, asset ids) of every task message waiting in the clipdex queue."""
    found = []
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]  # task protocol 2: [args, kwargs, embed]
        found.append((int(args[0]), list(args[1])))
    return found
