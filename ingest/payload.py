"""Qdrant payloads are derived from the catalog, so a move only rewrites the payload."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.catalog.batching import chunked
from core.catalog.models import Asset, Job, JobAsset, Location
from core.store.base import Payload, rfc3339

UPLOAD_JOB = "upload"  # the job kind of HTTP uploads, whose stored files have hash names
MANIFEST_JOB = "manifest"  # manifest runs: a downloaded URL is named by its last segment


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


def orientation(width: int, height: int) -> str:
    if width == height:
        return "square"
    return "portrait" if height > width else "landscape"


def build_payload(
    asset: Asset, locations: list[Location], upload_name: str | None = None
) -> Payload:
    """``upload_name``: the file name an upload was sent under (its stored file has a hash
    name); otherwise the name is the first path's file name."""
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
        "name": upload_name or os.path.basename(paths[0]),
        "meta": dict(asset.meta or {}),
    }
    if asset.format is not None:
        payload["format"] = asset.format
    if asset.width is not None and asset.height is not None:
        payload["width"] = asset.width
        payload["height"] = asset.height
        payload["orientation"] = orientation(asset.width, asset.height)
    if asset.taken_at is not None:
        payload["taken_at"] = rfc3339(asset.taken_at)
    for key in ("camera_make", "camera_model", "description"):
        if getattr(asset, key) is not None:
            payload[key] = getattr(asset, key)
    return payload


def _upload_names(session: Session, asset_ids: list[str]) -> dict[str, str]:
    """The name each uploaded asset was first sent under."""
    rows = session.execute(
        select(JobAsset.asset_id, JobAsset.filename)
        .join(Job, Job.id == JobAsset.job_id)
        .where(JobAsset.asset_id.in_(asset_ids), Job.kind.in_((UPLOAD_JOB, MANIFEST_JOB)))
        .order_by(Job.created_at.desc())
    )
    return {asset_id: _shown_name(name) for asset_id, name in rows if name}


def _shown_name(name: str) -> str:
    """An upload's file name, or a URL's last path segment: never its query or fragment,
    which can hold a signed URL's credentials."""
    if "://" in name:
        return unquote(PurePosixPath(urlsplit(name).path).name) or urlsplit(name).hostname or ""
    return os.path.basename(name)


def payloads_for(session: Session, asset_ids: Iterable[str]) -> dict[str, Payload]:
    """Payloads for assets that still have at least one live path."""
    payloads: dict[str, Payload] = {}
    for chunk in chunked(asset_ids):
        assets = {a.id: a for a in session.scalars(select(Asset).where(Asset.id.in_(chunk)))}
        by_asset: dict[str, list[Location]] = defaultdict(list)
        query = select(Location).where(Location.asset_id.in_(chunk), Location.missing.is_(False))
        for location in session.scalars(query):
            by_asset[location.asset_id].append(location)
        names = _upload_names(session, list(chunk))
        for asset_id, locations in by_asset.items():
            if asset_id in assets:
                payloads[asset_id] = build_payload(assets[asset_id], locations, names.get(asset_id))
    return payloads
