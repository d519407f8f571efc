"""Who migrates the catalog. The CLI owns the schema: its commands upgrade the catalog to head.
Long-running services (``clipdex serve``, ``clipdex worker``) upgrade only the embedded default
(SQLite under CLIPDEX_HOME, which nothing else would migrate); on a configured database they
check it is at head and stop with one line otherwise, leaving the upgrade to `clipdex migrate`
(compose's one-shot ``migrate`` service)."""

from __future__ import annotations

from sqlalchemy import Engine

from core.encoder import Encoder
from core.runtime import Runtime, open_runtime
from core.settings import Settings
from core.store import VectorStore
from migrations.runner import check_at_head, upgrade_to_head


def prepare_catalog(settings: Settings, engine: Engine, owner: bool) -> None:
    if owner or settings.database_url is None:
        upgrade_to_head(engine)
    else:
        check_at_head(engine)


def open_ready_runtime(
    settings: Settings,
    encoder: Encoder | None = None,
    store: VectorStore | None = None,
    owner: bool = True,
) -> Runtime:
    """A runtime on a catalog that is at head (upgraded when ``owner`` or embedded)."""
    runtime = open_runtime(settings, encoder=encoder, store=store)
    try:
        prepare_catalog(settings, runtime.engine, owner)
    except BaseException:
        runtime.close()
        raise
    return runtime
