"""The wired-up kernel for one process: settings, catalog, store and (lazy) encoder.

Nothing here loads the model unless a vector must be computed: the live index version is found
in the catalog and matched against the configured model by architecture and pretrained tag.
The model is loaded only to create the very first index version (its identity is stored with
it) or to encode. The catalog schema is the caller's business: the entry layer upgrades it (CLI,
embedded default) or checks it is at head (API, workers) before opening a runtime.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.db import make_engine, make_sessionmaker
from core.catalog.index_versions import (
    VersionRefused,
    activate_version,
    active_index,
    check_declared,
    ensure_active_index,
    identity_of,
    version_by_id,
)
from core.catalog.models import IndexVersion, TextSet
from core.encoder import Encoder, ModelSpec, OpenClipEncoder
from core.images import DecodeLimits, configure_pillow
from core.preprocess import PreprocessConfig
from core.settings import Settings
from core.store import VectorIndex, VectorStore, open_store


class NoIndexYet(RuntimeError):
    """Nothing has been ingested under this CLIPDEX_HOME / catalog yet."""


class UnknownIndexVersion(LookupError):
    """A task or request named an index version the catalog does not have."""


LIVE_ALIAS = "clipdex-live"


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    encoder: Encoder
    _store: VectorStore | None = None
    _indexes: dict[str, VectorIndex] = field(default_factory=dict, init=False)
    _encoders: dict[tuple[str, str], Encoder] = field(default_factory=dict, init=False)
    _version: IndexVersion | None = field(default=None, init=False)
    # Request threads of the HTTP API share one runtime; first use must happen once.
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    # One ingest at a time per process: a server's admin jobs, library scans and watch loop
    # share this runtime, and two registrations of the same new files would collide.
    ingest_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

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
        """The live index version for the configured model, created on first use.

        Model-free when an index exists: it is matched with the configured model by name and
        tag. Only creating the first version loads the model, for its full identity."""
        with self._lock:
            if self._version is None:
                with self.sessions() as session:
                    live = active_index(session)
                    if live is not None:
                        check_declared(live, self.encoder.declared)
                        self._version = live
                    else:
                        self._version = ensure_active_index(session, self.encoder.identity)
            return self._version

    def version(self, version_id: int) -> IndexVersion:
        """One index version by id, whether live or not (a task names the version it is for)."""
        with self.sessions() as session:
            found = version_by_id(session, version_id)
        if found is None:
            raise UnknownIndexVersion(f"no index version with id {version_id}")
        return found

    def index_of(self, version: IndexVersion) -> VectorIndex:
        """The collection of one index version, opened once per process."""
        with self._lock:
            index = self._indexes.get(version.collection)
            if index is None:
                index = self.store.open_index(version.collection, version.dim)
                self._indexes[version.collection] = index
            return index

    def set_aside(self, version: IndexVersion) -> str | None:
        """Move a damaged collection's files out of the way (``VectorStore.set_aside``); the
        next :meth:`index_of` opens it new and empty. Returns where they went, or None."""
        with self._lock:
            self._indexes.pop(version.collection, None)
        return self.store.set_aside(version.collection)

    def encoder_for(self, version: IndexVersion) -> Encoder:
        """The encoder that built ``version``: the configured one when it matches, else one
        made (lazily, once per process) from the model identity stored with the version."""
        declared = self.encoder.declared
        key = (version.architecture, version.pretrained)
        if key == (declared.architecture, declared.pretrained):
            return self.encoder
        with self._lock:
            encoder = self._encoders.get(key)
            if encoder is None:
                spec = ModelSpec(
                    version.architecture,
                    version.pretrained,
                    self.settings.device,
                    self.settings.precision,
                )
                encoder = self._encoders[key] = OpenClipEncoder(spec)
            return encoder

    def live_index(self) -> tuple[IndexVersion, VectorIndex]:
        """The live index for the configured model, created on first use."""
        version = self.live_version()
        return version, self.index_of(version)

    def existing_index(self) -> tuple[IndexVersion, VectorIndex]:
        """The live index without creating one or checking the model (status, assets);
        raises :class:`NoIndexYet`."""
        version = self._version
        if version is None:
            with self.sessions() as session:
                version = active_index(session)
            if version is None:
                raise NoIndexYet("nothing has been ingested yet: run `clipdex ingest PATH` first")
        return version, self.index_of(version)

    def catalog_live(self) -> IndexVersion | None:
        """The catalog's live version right now (no cache, no model check): what a long-running
        server polls to follow an activation made elsewhere."""
        with self.sessions() as session:
            return active_index(session)

    def follow_live(self, version: IndexVersion) -> None:
        """Make ``version`` this process's live version (after an activation)."""
        with self._lock:
            self._version = version

    def activate(
        self, version_id: int, caught_up: bool = False
    ) -> tuple[IndexVersion, IndexVersion | None]:
        """Make a ready/retired version live: one catalog transaction changes both versions'
        state and ``active``; then, on a Qdrant server, one alias update names its collection.
        A version that is behind the live one (files added or removed since it was built) is
        refused, unless ``caught_up`` (the reindex that just caught it up): ``clipdex reindex``
        catches it up."""
        self.version(version_id)  # an unknown id is UnknownIndexVersion (404), not refused
        with self.sessions() as session:
            new, old = activate_version(session, version_id, caught_up)
            session.commit()
        self.store.point_alias(LIVE_ALIAS, new.collection)
        with self._lock:
            self._version = None  # next use re-reads (and re-checks) the catalog
        return new, old

    def drop(self, version_id: int) -> IndexVersion:
        """Delete a non-live version: its catalog rows (states, text sets, jobs cascade) and
        its collections. The store is opened first: one held by another process refuses
        before the catalog changes."""
        store = self.store
        with self.sessions() as session:
            version = version_by_id(session, version_id)
            if version is None:
                raise UnknownIndexVersion(f"no index version with id {version_id}")
            if version.active:
                raise VersionRefused(
                    f"index version {version_id} is live; activate another one first"
                )
            text_collections = list(
                session.scalars(
                    select(TextSet.collection).where(TextSet.index_version_id == version_id)
                )
            )
            session.delete(version)
            session.commit()
        with self._lock:
            for name in (version.collection, *text_collections):
                self._indexes.pop(name, None)
                store.drop_index(name)
        return version

    def model_label(self) -> str:
        """What produced the live vectors, for reports; never loads the model."""
        return identity_of(self.live_version()).label

    def decode_limits(self, version: IndexVersion | None = None) -> DecodeLimits:
        """Decode limits for one index version's model (default: the live one), from the
        preprocessing config stored with it, so deciding them loads no model."""
        config = PreprocessConfig.from_open_clip((version or self.live_version()).preprocess)
        return decode_limits(self.settings, config)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self._indexes.clear()
        self.engine.dispose()


def decode_limits(settings: Settings, config: PreprocessConfig) -> DecodeLimits:
    return DecodeLimits(
        max_file_bytes=settings.max_file_bytes,
        max_image_pixels=settings.max_image_pixels,
        draft_min_side=0
        if settings.decode == "exact"
        else int(config.shortest_side * settings.draft_factor),
    )


def open_runtime(
    settings: Settings,
    encoder: Encoder | None = None,
    store: VectorStore | None = None,
) -> Runtime:
    """Connect to the catalog (already migrated); the store opens and the model loads on first
    use."""
    configure_pillow(settings.max_image_pixels)
    engine = make_engine(settings.catalog_url)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        _store=store,
        encoder=encoder
        if encoder is not None
        else OpenClipEncoder(ModelSpec.from_settings(settings)),
    )
