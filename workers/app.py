"""The Celery app, producer side: configuration and a sender. Tasks and the pool-child hooks
that load the model are registered only by the worker command (:mod:`workers.tasks`), so a
process that only sends never carries them.

Reliability baseline (GUIDE §5): late acks, reject on a lost worker, prefetch 1, JSON only,
soft < hard time limit < visibility timeout (checked by Settings), and the model loaded in each
pool child after fork, never in the parent.
"""

from __future__ import annotations

from celery import Celery

from core.settings import Settings
from ingest.queueing import SendBatch

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
    return app


def sender(app: Celery) -> SendBatch:
    """A ``SendBatch`` for ingest.queueing: one task message per batch of asset ids."""

    def send(version_id: int, asset_ids: list[str]) -> None:
        app.send_task(INDEX_BATCH, args=[version_id, asset_ids], queue=QUEUE)

    return send
