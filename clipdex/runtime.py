"""The wired-up kernel for one process: settings, catalog, store and (lazy) encoder."""

from __future__ import annotations

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
    store: VectorStore
    encoder: Encoder
    _index: VectorIndex | None = field(default=None, init=False)
    _version: IndexVersion | None = field(default=None, init=False)

    def decode_limits(self) -> DecodeLimits:
        side = self.encoder.preprocess.shortest_side
        return DecodeLimits(
            max_file_bytes=self.settings.max_file_bytes,
            max_image_pixels=self.settings.max_image_pixels,
            draft_min_side=int(side * self.settings.draft_factor),
        )

    def live_index(self) -> tuple[IndexVersion, VectorIndex]:
        """The live index for the configured model, created on first use (loads the model)."""
        if self._index is None or self._version is None:
            with self.sessions() as session:
                version = ensure_active_index(session, self.encoder.identity)
            self._version = version
            self._index = self.store.open_index(version.collection, version.dim)
        return self._version, self._index

    def existing_index(self) -> tuple[IndexVersion, VectorIndex]:
        """The live index without loading the model; raises :class:`NoIndexYet`."""
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
        self.store.close()
        self.engine.dispose()


def open_runtime(
    settings: Settings,
    encoder: Encoder | None = None,
    store: VectorStore | None = None,
) -> Runtime:
    """Upgrade the catalog, open the store; the encoder loads lazily on first use."""
    configure_pillow(settings.max_image_pixels)
    engine = make_engine(settings.catalog_url)
    upgrade_to_head(engine)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        store=store if store is not None else open_store(settings),
        encoder=encoder
        if encoder is not None
        else OpenClipEncoder(ModelSpec.from_settings(settings)),
    )
