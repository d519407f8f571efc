"""How many task messages wait for the workers: the length of the Celery queue in Redis (the
queue's list plus its priority-step lists, as kombu's Redis transport names them). Read by the
``/metrics`` endpoint at scrape time."""

from __future__ import annotations

from collections.abc import Callable

from core.settings import Settings

PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's default for the Redis transport
_SEPARATOR = "\x06\x16"


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def queue_depth_reader(settings: Settings) -> Callable[[], int] | None:
    """A function giving the queue's depth, or None without a Redis broker."""
    url = settings.broker_url
    if not url or not url.startswith(("redis://", "rediss://")):
        return None
    from workers.app import QUEUE

    keys = queue_keys(QUEUE)

    def depth() -> int:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            pipeline = client.pipeline()
            for key in keys:
                pipeline.llen(key)
            return int(sum(pipeline.execute()))
        finally:
            client.close()

    return depth
