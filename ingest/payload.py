"""Qdrant payloads are derived from the catalog, so a move only rewrites the payload."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import Asset, Location
from core.store.base import Payload, rfc3339


def ancestor_folders(path: str) -> list[str]:
    """Every folder above ``path``: '/a/b/c.jpg' -> ['/', '/a', '/a/b']."""
    folders = []
    folder = os.path.dirname(path)
    while True:
        folders.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folders[::-1]


def build_payload(asset: Asset, locations: list[Location]) -> Payload:
    paths = sorted(loc.path for loc in locations)
    folders = sorted({folder for path in paths for folder in ancestor_folders(path)})
    first = min(locations, key=lambda loc: loc.path)
    payload: Payload = {
        "paths": paths,
        "path": paths[0],
        "folder": os.path.dirname(paths[0]),
        "folders": folders,
        "bytes": asset.size_bytes,
        "mtime": first.mtime_ns / 1e9,
        "sha256": asset.sha256,
    }
    if asset.format is not None:
        payload["format"] = asset.format
    if asset.width is not None and asset.height is not None:
        payload["width"] = asset.width
        payload["height"] = asset.height
    if asset.taken_at is not None:
        payload["taken_at"] = rfc3339(asset.taken_at)
    return payload


def payloads_for(session: Session, asset_ids: Iterable[str]) -> dict[str, Payload]:
    """Payloads for assets that still have at least one live path."""
    payloads: dict[str, Payload] = {}
    for chunk in chunked(asset_ids):
        assets = {a.id: a for a in session.scalars(select(Asset).where(Asset.id.in_(chunk)))}
        by_asset: dict[str, list[Location]] = defaultdict(list)
        query = select(Location).where(Location.asset_id.in_(chunk), Location.missing.is_(False))
        for location in session.scalars(query):
            by_asset[location.asset_id].append(location)
        for asset_id, locations in by_asset.items():
            if asset_id in assets:
                payloads[asset_id] = build_payload(assets[asset_id], locations)
    return payloads
