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
BROKER_CHECK_TRIES = 3
BROKER_CONNECT_TIMEOUT = 10  # seconds; an address that drops packets fails instead of hanging


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
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "socket_connect_timeout": BROKER_CONNECT_TIMEOUT,
        },
        broker_connection_retry_on_startup=True,
        worker_proc_alive_timeout=300,  # a child loads the model before it reports alive
        worker_hijack_root_logger=False,
    )
    return app


def shown_broker(url: str) -> str:
    """The broker URL as it may be shown: without a password, in any URL of a failover list
    (``;``-separated) or in a ``password=`` query parameter."""
    return ";".join(_without_password(part) for part in url.split(";"))


def _without_password(url: str) -> str:
    from urllib.parse import parse_qsl, urlencode, urlsplit

    try:
        parts = urlsplit(url)
        if parts.password is not None:
            user = f"{parts.username}:***@" if parts.username else ":***@"
            parts = parts._replace(netloc=user + parts.netloc.rsplit("@", 1)[1])
        query = parse_qsl(parts.query, keep_blank_values=True)
        if any(key.lower() == "password" for key, _ in query):
            shown = [(k, "***" if k.lower() == "password" else v) for k, v in query]
            parts = parts._replace(query=urlencode(shown, safe="*"))
        return parts.geturl()
    except ValueError:
        return "the configured URL"


def check_broker(app: Celery, tries: int = BROKER_CHECK_TRIES) -> str | None:
    """Connect to the broker once, retrying ``tries`` times within seconds: why it cannot be
    reached, or None. Celery itself would retry a hundred times at startup."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=tries, interval_start=0.5, interval_step=0.5, interval_max=1.0
            )
    except Exception as error:
        return " ".join(str(error).split()) or type(error).__name__
    return None


def broker_problem(app: Celery, url: str, tries: int = BROKER_CHECK_TRIES) -> str | None:
    """:func:`check_broker` as the one line every command says: ``cannot reach the broker at
    URL (CLIPDEX_BROKER_URL): why``, the URL without its password; None when it answers."""
    problem = check_broker(app, tries)
    if problem is None:
        return None
    return f"cannot reach the broker at {shown_broker(url)} (CLIPDEX_BROKER_URL): {problem}"


def sender(app: Celery) -> SendBatch:
    """A ``SendBatch`` for ingest.queueing: one task message per batch of asset ids."""

    def send(version_id: int, asset_ids: list[str]) -> None:
        app.send_task(INDEX_BATCH, args=[version_id, asset_ids], queue=QUEUE)

    return send
