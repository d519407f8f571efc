"""Celery workers for distributed ingest: the producer-side app (``workers.app``) and the thin
batch task with its pool-child hooks (``workers.tasks``, registered only by ``clipdex worker``).
Imports the kernel and ``ingest`` only."""
