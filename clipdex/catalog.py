"""Who migrates the catalog. ``clipdex migrate`` (compose's one-shot ``migrate`` service) is the
one command that upgrades a configured database (CLIPDEX_DATABASE_URL): it may be shared by
servers and workers still running the older code, so no other command changes its schema
behind them. Other CLI commands create the schema of a new, empty database, and upgrade the
embedded default (SQLite under CLIPDEX_HOME, which nothing else would migrate); long-running
services (``clipdex serve``, ``clipdex worker``) upgrade only the embedded default. Whatever
may not upgrade checks that the catalog is at head and stops with one line naming
`clipdex migrate` otherwise."""

from __future__ import annotations

from sqlalchemy import Engine

from core.encoder import Encoder
from core.runtime import Runtime, open_runtime
from core.settings import Settings
from core.store import VectorStore
from migrations.runner import check_at_head, current_revision, upgrade_to_head


def prepare_catalog(settings: Settings, engine: Engine, owner: bool) -> None:
    """Upgrade the embedded catalog; on a configured database, create the schema of a new one
    when ``owner`` (a CLI command), and otherwise only check it is at head."""
    if settings.database_url is None or (owner and current_revision(engine) is None):
        upgrade_to_head(engine)
    else:
        check_at_head(engine)


def open_ready_runtime(
    settings: Settings,
    encoder: Encoder | None = None,
    store: VectorStore | None = None,
    owner: bool = True,
) -> Runtime:
    """A runtime on a catalog that is at head (see :func:`prepare_catalog`)."""
    runtime = open_runtime(settings, encoder=encoder, store=store)
    try:
        prepare_catalog(settings, runtime.engine, owner)
    except BaseException:
        runtime.close()
        raise
    return runtime
