"""The Celery app: an entry point that wires settings, kernel and the ingest pipeline.

Reliability baseline (GUIDE §5): late acks, reject on a lost worker, prefetch 1, JSON only,
soft < hard time limit < visibility timeout (checked by Settings), and the model loaded in each
pool child after fork, never in the parent.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from clipdex.settings import Settings

INDEX_BATCH = "clipdex.index_batch"
QUEUE = "clipdex"


def make_celery(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ValueError("set CLIPDEX_BROKER_URL (e.g. redis://127.0.0.1:6379/0) for workers")
    app = Celery("clipdex", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        accept_content=["json"],
        task_serializer="json",
        task_ignore_result=True,
        task_default_queue=QUEUE,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_proc_alive_timeout=300,  # a child loads the model before it reports alive
        worker_hijack_root_logger=False,
    )
    from workers.tasks import register_tasks

    register_tasks(app, settings)
    return app


def sender(app: Celery) -> Any:
    """A ``SendBatch`` for ingest.queueing: one task message per batch of asset ids."""

    def send(version_id: int, asset_ids: list[str]) -> None:
        app.send_task(INDEX_BATCH, args=[version_id, asset_ids], queue=QUEUE)

    return send
