"""Thin tasks "like a web view": deserialize ids, call the shared pipeline, own retry policy."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.exc import OperationalError

from core.runtime import Runtime, open_runtime
from core.settings import Settings
from ingest.batch import index_assets

log = logging.getLogger(__name__)


class _ChildState:
    """The runtime of one pool child process, built after fork (worker_process_init)."""

    runtime: Runtime | None = None


def register_tasks(app: Celery, settings: Settings) -> None:
    @worker_process_init.connect(weak=False)
    def load_model(**_: Any) -> None:
        _ChildState.runtime = open_runtime(settings)
        _ChildState.runtime.live_index()  # opens the store in the child, never in the parent
        log.info("worker child ready: %s", _ChildState.runtime.encoder.identity.label)

    @worker_process_shutdown.connect(weak=False)
    def close(**_: Any) -> None:
        if _ChildState.runtime is not None:
            _ChildState.runtime.close()

    @app.task(
        name="clipdex.index_batch",
        bind=True,
        autoretry_for=(OperationalError,),  # the catalog went away: retry, the batch is idempotent
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=10,
    )
    def index_batch(self: Task, version_id: int, asset_ids: list[str]) -> dict[str, int]:
        runtime = _ChildState.runtime
        if runtime is None:  # a solo/threads pool sends no worker_process_init
            runtime = _ChildState.runtime = open_runtime(settings)
        outcome = index_assets(runtime, version_id, asset_ids)
        log.info("batch of %d: %s", len(asset_ids), outcome.as_dict())
        return outcome.as_dict()
