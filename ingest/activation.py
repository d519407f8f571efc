"""Making a version live with payloads that say what the catalog says now.

Moves, new duplicate paths, tags and metadata rewrite the payloads of the live version (and of
a version being built) only. A version kept ``ready`` or ``retired`` keeps the payloads it had,
so going back to it would show files at paths they left and miss new tags, folders and
keywords. Its stale payloads are rewritten from the catalog before it goes live (a pass over
its points, as ``clipdex verify`` makes; vectors are never touched)."""

from __future__ import annotations

from core.catalog.index_versions import activate_version
from core.catalog.models import IndexVersion
from core.runtime import Runtime
from ingest.verify import sync_payloads


def activate_synced(
    runtime: Runtime, version_id: int, caught_up: bool = False
) -> tuple[IndexVersion, IndexVersion | None]:
    """:meth:`Runtime.activate`, after rewriting the version's stale payloads."""
    version = runtime.version(version_id)  # an unknown id: UnknownIndexVersion, nothing done
    if not version.active:
        with runtime.sessions() as session:  # refused (building, behind): before any pass
            activate_version(session, version_id, caught_up)
            session.rollback()
        sync_payloads(runtime.sessions, runtime.index_of(version), version.id)
    return runtime.activate(version_id, caught_up=caught_up)
