"""Thin tasks "like a web view": deserialize ids, call the shared pipeline, own retry policy."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.exc import OperationalError

from core.runtime import Runtime, open_runtime
from core.settings import Settings
from ingest.batch import BeforeEncode, index_assets
from ingest.pipeline import WorkItem

log = logging.getLogger(__name__)

CHILD_INIT_FAILED = 3  # exit status of a pool child whose runtime could not start


class _ChildState:
    """The runtime of one pool child process, built after fork (worker_process_init)."""

    runtime: Runtime | None = None


# Shared with the pool children (made before they fork): set by a child that gave up, so that
# the worker that stops because of it exits with a failure, not 0 (a supervisor's on-failure).
_GAVE_UP = multiprocessing.Value("b", 0, lock=False)


def a_child_gave_up() -> bool:
    """Whether a pool child of this worker could not start (see ``_give_up_child``)."""
    return bool(_GAVE_UP.value)


def open_for_work(runtime: Runtime) -> None:
    """Open what a batch needs, so that a runtime that cannot work fails now: the store, the
    live index (matched with the configured model) when one exists, and the model. It never
    creates the first index version: that is the first ingest's, which may run right now."""
    from core.catalog.index_versions import active_index

    with runtime.sessions() as session:
        exists = active_index(session) is not None
    if exists:
        runtime.live_index()
    else:
        runtime.store  # noqa: B018  (opens it)
    runtime.encoder.identity  # noqa: B018  (loads the model)


def crash_on(sha256: str) -> BeforeEncode:
    """FAULT INJECTION for tests only: kill this process with SIGKILL (as a segfault or the OOM
    killer would) when the image with this SHA-256 is about to be encoded."""

    def check(items: Sequence[WorkItem]) -> None:
        if any(item.sha256 == sha256 for item in items):
            log.warning("fault injection: SIGKILL before encoding %s", sha256)
            os.kill(os.getpid(), signal.SIGKILL)

    return check


def register_tasks(
    app: Celery, settings: Settings, crash_on_sha256: str | None = None, gpus: Sequence[int] = ()
) -> None:
    """Register the batch task and the pool-child hooks. ``crash_on_sha256`` is the
    fault-injection hook of ``clipdex worker`` (off by default; see :func:`crash_on`); with
    ``gpus``, each pool child encodes on the GPU its pool index picks (core.devices)."""
    before_encode = crash_on(crash_on_sha256) if crash_on_sha256 else None

    @worker_process_init.connect(weak=False)
    def load_model(**_: Any) -> None:
        try:
            runtime = _ChildState.runtime = open_runtime(_child_settings(settings, gpus))
            open_for_work(runtime)  # opens the store in the child, never in the parent
            log.info("worker child ready: %s", runtime.encoder.identity.label)
        except Exception as error:  # a broken child must never take a task
            _give_up_child(error)

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
        outcome = index_assets(runtime, version_id, asset_ids, before_encode)
        log.info("batch of %d for version %d: %s", len(asset_ids), version_id, outcome.as_dict())
        return outcome.as_dict()


def _child_settings(settings: Settings, gpus: Sequence[int]) -> Settings:
    if not gpus:
        return settings
    from billiard.process import current_process  # type: ignore[import-untyped]

    from core.devices import device_for_child

    device = device_for_child(int(getattr(current_process(), "index", 0)), gpus)
    return settings.model_copy(update={"device": device})


def _give_up_child(error: Exception) -> None:
    """A pool child that cannot open its runtime exits before it is ready, and asks the main
    worker process to shut down (warm: a reserved message goes back to the broker), so the
    worker stops instead of restarting children that fail forever, each failing its tasks."""
    message = " ".join(str(error).split()) or type(error).__name__
    log.critical("worker child cannot start, stopping the worker: %s", message)
    print(f"clipdex: error: worker child cannot start: {message}", file=sys.stderr, flush=True)
    _GAVE_UP.value = 1
    if _ChildState.runtime is not None:
        try:
            _ChildState.runtime.close()
        except Exception:
            log.warning("closing the runtime of a failed child failed", exc_info=True)
    os.kill(os.getppid(), signal.SIGTERM)
    os._exit(CHILD_INIT_FAILED)
