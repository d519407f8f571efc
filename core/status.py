"""What `clipdex status` reports; read from the catalog and the store, never the model."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.catalog.db import normalized_url
from core.catalog.index_versions import active_index, identity_of
from core.catalog.ingest_runs import close_dead_runs
from core.catalog.models import (
    Asset,
    AssetIndexState,
    AssetState,
    Failure,
    IngestRun,
    Location,
)
from core.runtime import Runtime
from core.store.base import StoreError


def state_counts(session: Session) -> dict[str, int]:
    """Assets of the live index by state (all zero before the first ingest)."""
    states = {state.value: 0 for state in AssetState}
    version = active_index(session)
    if version is not None:
        query = (
            select(AssetIndexState.state, func.count())
            .where(AssetIndexState.index_version_id == version.id)
            .group_by(AssetIndexState.state)
        )
        states.update({state: count for state, count in session.execute(query)})
    return states


def collect_status(runtime: Runtime) -> dict[str, Any]:
    with runtime.sessions() as session:
        version = active_index(session)
        states = state_counts(session)
        assets = session.scalar(select(func.count()).select_from(Asset)) or 0
        paths = (
            session.scalar(
                select(func.count()).select_from(Location).where(Location.missing.is_(False))
            )
            or 0
        )
        failures = session.scalar(select(func.count()).select_from(Failure)) or 0
        close_dead_runs(session)
        session.commit()
        last_run = session.scalars(select(IngestRun).order_by(IngestRun.id.desc()).limit(1)).first()
        unfinished = (
            session.scalar(
                select(func.count()).select_from(IngestRun).where(IngestRun.status == "running")
            )
            or 0
        )
    points: int | None = 0
    graph_due = 0  # vectors an embedded store searches by scan until `clipdex optimize`
    store_error: str | None = None
    model = None
    collection = None
    if version is not None:
        model = identity_of(version).as_dict()
        collection = version.collection
        try:
            index = runtime.existing_index()[1]
            points, graph_due = index.count(), index.build_due()
        except StoreError as error:  # the catalog still answers; say why the store did not
            points, store_error = None, str(error)
    return {
        "home": str(runtime.settings.home),
        # no password, and no query (it may carry one: ?password=...)
        "catalog": normalized_url(runtime.settings.catalog_url)
        .set(query={})
        .render_as_string(hide_password=True),
        "store": runtime.store_kind,
        "collection": collection,
        "model": model,
        "assets": assets,
        "paths": paths,
        "states": states,
        **states,
        "points": points,
        "store_error": store_error,
        "graph_due": graph_due,
        "failures": failures,
        "last_run": _run_summary(last_run),
        # Runs still marked running: in progress now, or killed before they could finish.
        "unfinished_runs": unfinished,
    }


def _run_summary(run: IngestRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "status": run.status,
        "roots": run.roots,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "seconds": run.seconds,
        "counts": {k: v for k, v in (run.counts or {}).items() if isinstance(v, int)},
    }
