"""A small library with something for every filter, mode and sort to tell apart: the corpus
photos plus PNG copies that carry EXIF dates (some undated), cameras, quarter turns (portrait)
and small sizes; one photo named after a rare word; user metadata set through the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select

from core.catalog.models import Asset, Location
from core.runtime import Runtime
from ingest.payload import payloads_for

NAMED = "zanzibar_harbour.jpg"  # a file name whose words nothing else has
CAMERAS = [("Canon", "EOS 5D"), ("NIKON CORPORATION", "D750"), ("Hasselblad", "X2D")]


def enrich(library: Path) -> None:
    jpegs = sorted(library.rglob("*.jpg"))
    for index, source in enumerate(jpegs):
        with Image.open(source) as image:
            copy = image.convert("RGB")
        if index % 3 == 2:
            copy = copy.resize((copy.width // 4, copy.height // 4))
        if index % 4 == 1:
            copy = copy.transpose(Image.Transpose.ROTATE_90)  # portrait
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = CAMERAS[index % 3]
        if index % 4 != 3:  # every fourth copy is undated
            exif[0x8769] = {0x9003: f"{2016 + (index * 5) % 8}:06:01 12:00:00"}
        copy.save(source.with_name(f"{source.stem}-copy.png"), "PNG", exif=exif)
    jpegs[3].rename(jpegs[3].with_name(NAMED))


def asset_id_of(runtime: Runtime, path: Path) -> str:
    with runtime.sessions() as session:
        found = session.scalars(
            select(Location.asset_id).where(Location.path == str(path.resolve()))
        ).one()
    return str(found)


def set_meta(runtime: Runtime, path: Path, meta: dict[str, Any]) -> str:
    """What ``clipdex tag`` does: the catalog first, then the point's payload from it."""
    asset_id = asset_id_of(runtime, path)
    _version, index = runtime.existing_index()
    with runtime.sessions() as session:
        asset = session.get(Asset, asset_id)
        assert asset is not None
        asset.meta = meta
        session.commit()
        index.set_payloads(payloads_for(session, [asset_id]))
    return asset_id
