"""Index versions: which collection holds which model's vectors, and which one is live."""

from __future__ import annotations

import hashlib
import json
import logging
import re

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from core.catalog.models import AssetIndexState, AssetState, IndexVersion, VersionState
from core.encoder import DeclaredModel, ModelIdentity

log = logging.getLogger(__name__)


class ModelMismatch(RuntimeError):
    """The configured model is not the one the live index was built with."""


class VersionRefused(RuntimeError):
    """An index version cannot take that step in its lifecycle (activate a building one, drop
    the live one)."""


def collection_name(identity: ModelIdentity) -> str:
    fingerprint = json.dumps(
        [identity.architecture, identity.pretrained, identity.preprocess, identity.dim],
        sort_keys=True,
    )
    slug = re.sub(r"[^a-z0-9]+", "-", identity.architecture.lower()).strip("-")[:48]
    return f"clipdex-{slug}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:10]}"


def active_index(session: Session) -> IndexVersion | None:
    return session.scalars(select(IndexVersion).where(IndexVersion.active.is_(True))).first()


def identity_of(version: IndexVersion) -> ModelIdentity:
    return ModelIdentity(
        architecture=version.architecture,
        pretrained=version.pretrained,
        open_clip_version=version.open_clip_version,
        preprocess=dict(version.preprocess),
        dim=version.dim,
    )


def version_by_id(session: Session, version_id: int) -> IndexVersion | None:
    return session.get(IndexVersion, version_id)


def check_declared(version: IndexVersion, declared: DeclaredModel) -> None:
    """Refuse, without loading any model, a configured model that did not build ``version``."""
    differences = [
        name
        for name, stored, configured in (
            ("architecture", version.architecture, declared.architecture),
            ("pretrained", version.pretrained, declared.pretrained),
        )
        if stored != configured
    ]
    if differences:
        raise ModelMismatch(
            _mismatch_message(version, declared.architecture, declared.pretrained, differences)
        )


def _mismatch_message(
    version: IndexVersion, architecture: str, pretrained: str, differences: list[str]
) -> str:
    return (
        f"the live index {version.collection!r} was built with {identity_of(version).label}, "
        f"but the configured model is {architecture} ({pretrained}) (differs in: "
        f"{', '.join(differences)}). Vectors of two models are never mixed: set "
        "CLIPDEX_MODEL/CLIPDEX_PRETRAINED back, or use a fresh CLIPDEX_HOME for the new model."
    )


def _version_row(identity: ModelIdentity, state: VersionState) -> IndexVersion:
    return IndexVersion(
        collection=collection_name(identity),
        architecture=identity.architecture,
        pretrained=identity.pretrained,
        open_clip_version=identity.open_clip_version,
        preprocess=identity.preprocess,
        dim=identity.dim,
        active=state == VersionState.LIVE,
        state=state,
    )


def ensure_active_index(session: Session, identity: ModelIdentity) -> IndexVersion:
    """Return the live index for this model, creating it on first use; refuse another model."""
    live = active_index(session)
    if live is None:
        live = _version_row(identity, VersionState.LIVE)
        session.add(live)
        try:
            session.commit()
            return live
        except IntegrityError:  # another process or request created it first: use theirs
            session.rollback()
            live = active_index(session)
            if live is None:
                raise

    stored = identity_of(live)
    differences = [
        name
        for name in ("architecture", "pretrained", "preprocess", "dim")
        if getattr(stored, name) != getattr(identity, name)
    ]
    if differences:
        raise ModelMismatch(
            _mismatch_message(live, identity.architecture, identity.pretrained, differences)
        )
    if stored.open_clip_version != identity.open_clip_version:
        log.warning(
            "index %s was built with open_clip %s, now running %s",
            live.collection,
            stored.open_clip_version,
            identity.open_clip_version,
        )
    return live


def all_versions(session: Session) -> list[IndexVersion]:
    return list(session.scalars(select(IndexVersion).order_by(IndexVersion.id)))


def version_for_identity(session: Session, identity: ModelIdentity) -> IndexVersion | None:
    """The version (any state) whose collection holds this exact model's vectors."""
    name = collection_name(identity)
    return session.scalars(select(IndexVersion).where(IndexVersion.collection == name)).first()


def new_building_version(session: Session, identity: ModelIdentity) -> IndexVersion:
    """A new, not yet live version for ``identity`` (flushed, not committed)."""
    version = _version_row(identity, VersionState.BUILDING)
    session.add(version)
    session.flush()
    return version


def activate_version(
    session: Session, version_id: int, caught_up: bool = False
) -> tuple[IndexVersion, IndexVersion | None]:
    """Make a ready or retired version live and retire the live one, in the caller's
    transaction (commit once: ``state`` and ``active`` change together). Returns (new, old).
    Unless ``caught_up`` (a reindex that just brought it in line), a version that is behind
    the live one is refused: making it live would lose files and bring deleted ones back."""
    version = session.get(IndexVersion, version_id, with_for_update=True)
    if version is None:
        raise VersionRefused(f"no index version with id {version_id}")
    if version.state == VersionState.BUILDING:
        raise VersionRefused(
            f"index version {version_id} is still building; finish it with `clipdex reindex`"
        )
    old = active_index(session)
    if old is not None and old.id == version.id:
        return version, None
    if old is not None:
        missing, extra = (0, 0) if caught_up else version_drift(session, old.id, version.id)
        if missing or extra:
            raise VersionRefused(
                f"index version {version_id} is behind the live one ({missing} assets to add, "
                f"{extra} to remove since it was built): run `clipdex reindex --model "
                f"{version.architecture} --pretrained {version.pretrained}` to catch it up "
                "and make it live (it reuses the vectors it holds)"
            )
        old.active = False
        old.state = VersionState.RETIRED
        session.flush()  # no two active rows at any point of the transaction
    version.active = True
    version.state = VersionState.LIVE
    session.flush()
    return version, old


def version_drift(session: Session, live_id: int, other_id: int) -> tuple[int, int]:
    """How far ``other_id`` is from the live version: (assets the live one holds or is
    working on that ``other_id`` has no row for, assets ``other_id`` holds that the live one
    no longer has at all). Failed rows count on neither side (an image the live model failed
    on is no drift). Work in flight on the live version counts: a switch would lose it."""
    return _rows_without(session, live_id, other_id), _rows_without(session, other_id, live_id)


def _rows_without(session: Session, version_id: int, other_id: int) -> int:
    """How many assets ``version_id`` holds (failed ones aside) that ``other_id`` has no row
    for at all."""
    here, there = aliased(AssetIndexState), aliased(AssetIndexState)
    query = (
        select(func.count())
        .select_from(here)
        .where(
            here.index_version_id == version_id,
            here.state != AssetState.FAILED,
            ~exists().where(there.index_version_id == other_id, there.asset_id == here.asset_id),
        )
    )
    return int(session.scalar(query) or 0)
