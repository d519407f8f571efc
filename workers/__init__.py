"""Celery GPU workers for distributed ingest (the Celery app, thin tasks, reconciler).

Empty until distributed ingest lands; inline ingest (``ingest.run``) is the only path today.
"""
