"""The user's own metadata on assets (manifests, uploads, ``clipdex tag``, ``PATCH``) and
forgetting an asset (``DELETE``).

Metadata is a flat object of text: keys of letters, digits, ``_`` and ``-``; values are text or
lists of text (numbers and booleans are kept as their text, so ``--where year=2020`` matches
what a JSON manifest gave as 2020). It lives in ``assets.meta`` (the catalog is the truth) and
in every stored point's payload under ``meta``; a change rewrites the payload of the points
already indexed, never their vectors. Points written later take it from the catalog.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import (
    Asset,
    AssetIndexState,
    AssetState,
    Failure,
    IndexVersion,
    JobAsset,
    Location,
    VersionState,
)
from core.paths import UnusablePath, is_utf8, resolved
from core.runtime import Runtime
from ingest.payload import payloads_for

Metadata = dict[str, str | list[str]]
MAX_KEYS = 64
MAX_TEXT = 1000
MAX_LIST = 100
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as queries take them (search.query.META_KEY)


class BadMetadata(ValueError):
    """Metadata that is not a flat object of text (the message says which key and why)."""


class NoSuchAsset(LookupError):
    pass


def _text(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str) or (isinstance(value, float) and math.isfinite(value)):
        text = str(value)
        if len(text) > MAX_TEXT:
            raise BadMetadata(f"metadata {key!r}: a value is over {MAX_TEXT} characters")
        return _utf8(key, text)
    raise BadMetadata(f"metadata {key!r}: values are text, numbers, booleans or lists of them")


def _utf8(key: str, text: str) -> str:
    """``text`` if it can be written as UTF-8. A lone surrogate (a JSON ``"\\udcff"`` escape, a
    byte of a shell argument that is not UTF-8) is a Python str the catalog would store, but the
    payload write and every JSON answer would then fail on it: the asset would be poisoned."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start]
        raise BadMetadata(
            f"metadata {key!r}: a value is not UTF-8 text ({bad!r} at character {error.start + 1}:"
            " a lone surrogate, or a byte that is not UTF-8)"
        ) from None
    return text


def check_key(key: object) -> str:
    """``key`` if queries can name it; ASCII only, so a key is always UTF-8 (and ``{key!r}``
    shows one that is not safely, a lone surrogate escaped)."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise BadMetadata(
            f"metadata key {key!r}: use 1 to 64 letters, digits, '_' or '-' (no dots or spaces)"
        )
    return key


def checked(value: object, removals: bool = False) -> dict[str, str | list[str] | None]:
    """``value`` as metadata; with ``removals``, a ``None`` value (JSON null) means remove."""
    if not isinstance(value, Mapping):
        raise BadMetadata("metadata must be a JSON object of key: value")
    if len(value) > MAX_KEYS:
        raise BadMetadata(f"at most {MAX_KEYS} metadata keys")
    out: dict[str, str | list[str] | None] = {}
    for key, item in value.items():
        key = check_key(key)
        if item is None and removals:
            out[key] = None
        elif isinstance(item, list):
            if len(item) > MAX_LIST:
                raise BadMetadata(f"metadata {key!r}: at most {MAX_LIST} values in a list")
            out[key] = [_text(key, element) for element in item]
        else:
            out[key] = _text(key, item)
    return out


def checked_metadata(value: object) -> Metadata:
    """``value`` as metadata to store (no removals)."""
    return {k: v for k, v in checked(value).items() if v is not None}


def merged(
    current: Mapping[str, Any] | None, changes: Mapping[str, str | list[str] | None]
) -> Metadata | None:
    """``current`` with ``changes`` applied (``None`` removes a key); ``None`` when empty."""
    result: Metadata = dict(current or {})
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    if len(result) > MAX_KEYS:
        raise BadMetadata(f"at most {MAX_KEYS} metadata keys on an asset")
    return result or None


def apply_metadata(
    session: Session, changes: Mapping[str, Mapping[str, str | list[str] | None]]
) -> set[str]:
    """Merge ``changes`` (by asset id) into the catalog; returns the ids whose metadata
    changed. The caller commits, then calls :func:`refresh_payloads` with them."""
    changed: set[str] = set()
    for chunk in chunked(sorted(changes)):
        for asset in session.scalars(select(Asset).where(Asset.id.in_(chunk))):
            updated = merged(asset.meta, changes[asset.id])
            if updated != (asset.meta or None):
                asset.meta = updated
                changed.add(asset.id)
    return changed


def refresh_payloads(runtime: Runtime, asset_ids: Iterable[str]) -> int:
    """Rewrite the payload of every stored point of these assets, in every index version that
    holds them (live, building or ready); returns how many points were rewritten."""
    ids = sorted(set(asset_ids))
    rewritten = 0
    with runtime.sessions() as session:
        for version in _versions_holding(session, ids):
            indexed = _indexed_in(session, version.id, ids)
            if not indexed:
                continue
            index = runtime.index_of(version)
            stored = index.existing_ids(indexed)
            index.set_payloads(payloads_for(session, stored))
            rewritten += len(stored)
    return rewritten


def _versions_holding(
    session: Session, ids: Sequence[str], retired: bool = False
) -> list[IndexVersion]:
    """Versions with rows for ``ids``: those that can serve (for payload rewrites), and with
    ``retired`` the retired ones too (a deletion must not come back with a rollback)."""
    keep: tuple[VersionState, ...] = (VersionState.BUILDING, VersionState.READY, VersionState.LIVE)
    keep += (VersionState.RETIRED,) if retired else ()
    version_ids: set[int] = set()
    for chunk in chunked(ids):
        query = select(AssetIndexState.index_version_id).where(AssetIndexState.asset_id.in_(chunk))
        version_ids.update(session.scalars(query.distinct()))
    found = session.scalars(select(IndexVersion).where(IndexVersion.id.in_(version_ids))).all()
    return [version for version in found if version.state in keep]


def _indexed_in(session: Session, version_id: int, ids: Sequence[str]) -> list[str]:
    indexed: list[str] = []
    for chunk in chunked(ids):
        indexed += session.scalars(
            select(AssetIndexState.asset_id).where(
                AssetIndexState.index_version_id == version_id,
                AssetIndexState.state == AssetState.INDEXED,
                AssetIndexState.asset_id.in_(chunk),
            )
        ).all()
    return indexed


def checked_id(asset_id: str) -> str:
    try:
        return str(uuid.UUID(asset_id))
    except ValueError:
        raise NoSuchAsset(f"no asset with id {asset_id[:64]!r} (asset ids are UUIDs)") from None


def asset_for(session: Session, ref: str) -> Asset:
    """An asset by id, or by one of its paths (a file name given on the command line)."""
    try:
        asset = session.get(Asset, str(uuid.UUID(ref)))
    except ValueError:
        try:
            path = str(resolved(Path(ref)))
        except UnusablePath:
            raise NoSuchAsset(f"no asset {ref!r}: that is not a usable path") from None
        if not is_utf8(path):  # no indexed path is (``ingest.scan``), and SQL cannot bind it
            raise NoSuchAsset(
                f"no asset {ref!r}: that path is not valid UTF-8, and every indexed one is"
            ) from None
        query = select(Location.asset_id).where(Location.path == path, Location.missing.is_(False))
        found = session.scalars(query).first()
        asset = session.get(Asset, found) if found is not None else None
    if asset is None:
        raise NoSuchAsset(f"no asset {ref!r}: give an asset id or the path of an indexed file")
    return asset


def update_metadata(
    runtime: Runtime, ref: str, changes: Mapping[str, str | list[str] | None]
) -> tuple[str, Metadata]:
    """Apply ``changes`` to one asset (by id or path), catalog then payloads; returns its id
    and metadata now. Nothing is encoded again."""
    with runtime.sessions() as session:
        asset = asset_for(session, ref)
        asset_id = asset.id
        changed = apply_metadata(session, {asset_id: changes})
        meta: Metadata = dict(asset.meta or {})
        session.commit()
    if changed:
        refresh_payloads(runtime, changed)
    return asset_id, meta


@dataclass(frozen=True, slots=True)
class Forgotten:
    id: str
    kind: str  # "upload" (its stored bytes were deleted) or "paths" (files left on disk)
    paths: list[str]


def delete_asset(runtime: Runtime, asset_id: str) -> Forgotten:
    """Remove an asset from the catalog and from every index version's collection. Stored
    bytes (uploads, downloaded URLs) are deleted; files in the user's folders never are (a
    rescan of their folder brings them back)."""
    asset_id = checked_id(asset_id)
    blobs = runtime.settings.blobs
    with runtime.sessions() as session:
        if session.get(Asset, asset_id) is None:
            raise NoSuchAsset(f"no asset with id {asset_id}")
        versions = _versions_holding(session, [asset_id], retired=True)
        paths = list(session.scalars(select(Location.path).where(Location.asset_id == asset_id)))
    for version in versions:  # points first: a crash now leaves a catalog row, not a ghost hit
        runtime.index_of(version).delete([asset_id])
    with runtime.sessions() as session:
        for table in (JobAsset, AssetIndexState, Location, Failure):
            session.execute(delete(table).where(table.asset_id == asset_id))
        session.execute(delete(Asset).where(Asset.id == asset_id))
        session.commit()
    for version in versions:  # and again: a batch encoding it may have written its point since
        runtime.index_of(version).delete([asset_id])  # (it drops points it finds rowless after)
    stored = [path for path in paths if Path(path).is_relative_to(blobs)]
    for path in stored:
        Path(path).unlink(missing_ok=True)
    return Forgotten(asset_id, "upload" if stored else "paths", sorted(paths))
