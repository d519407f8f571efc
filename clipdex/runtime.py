"""The wired-up kernel for one process: settings, catalog, store and (lazy) encoder."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from clipdex.catalog.db import make_engine, make_sessionmaker
from clipdex.catalog.index_versions import active_index, ensure_active_index
from clipdex.catalog.migrate import upgrade_to_head
from clipdex.catalog.models import IndexVersion
from clipdex.encoder import Encoder, ModelSpec, OpenClipEncoder
from clipdex.images import DecodeLimits, configure_pillow
from clipdex.settings import Settings
from clipdex.store import VectorIndex, VectorStore, open_store


class NoIndexYet(RuntimeError):
    """Nothing has been ingested under this CLIPDEX_HOME / catalog yet."""


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    encoder: Encoder
    _store: VectorStore | None = None
    _index: VectorIndex | None = field(default=None, init=False)
    _version: IndexVersion | None = field(default=None, init=False)
    # Request threads of the HTTP API share one runtime; first use must happen once.
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    @property
    def store(self) -> VectorStore:
        """Opened on first use: an enqueue-only process never takes the embedded store's lock."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    @property
    def store_kind(self) -> str:
        if self._store is not None:
            return self._store.kind
        return "server" if self.settings.qdrant_url else "embedded"

    def live_version(self) -> IndexVersion:
        """The live index version for the configured model (loads the model, not the store)."""
        with self._lock:
            if self._version is None:
                with self.sessions() as session:
                    self._version = ensure_active_index(session, self.encoder.identity)
            return self._version

    def decode_limits(self) -> DecodeLimits:
        side = self.encoder.preprocess.shortest_side
        return DecodeLimits(
            max_file_bytes=self.settings.max_file_bytes,
            max_image_pixels=self.settings.max_image_pixels,
            draft_min_side=int(side * self.settings.draft_factor),
        )

    def live_index(self) -> tuple[IndexVersion, VectorIndex]:
        """The live index for the configured model, created on first use (loads the model)."""
        version = self.live_version()
        with self._lock:
            if self._index is None:
                self._index = self.store.open_index(version.collection, version.dim)
            return version, self._index

    def existing_index(self) -> tuple[IndexVersion, VectorIndex]:
        """The live index without loading the model; raises :class:`NoIndexYet`."""
        with self._lock:
            if self._index is not None and self._version is not None:
                return self._version, self._index
            with self.sessions() as session:
                version = active_index(session)
            if version is None:
                raise NoIndexYet("nothing has been ingested yet: run `clipdex ingest PATH` first")
            self._version = version
            self._index = self.store.open_index(version.collection, version.dim)
            return version, self._index

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._index = None
        self.engine.dispose()


def open_runtime(
    settings: Settings,
    encoder: Encoder | None = None,
    store: VectorStore | None = None,
) -> Runtime:
    """Upgrade the catalog; the store opens and the encoder loads on first use."""
    configure_pillow(settings.max_image_pixels)
    engine = make_engine(settings.catalog_url)
    upgrade_to_head(engine)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        _store=store,
        encoder=encoder
        if encoder is not None
        else OpenClipEncoder(ModelSpec.from_settings(settings)),
    )
