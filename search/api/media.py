"""``GET /v1/assets/{id}/image`` and ``/thumbnail``: an asset's original bytes, for the page's
full-size view, and a small JPEG rendering of them.

Only the bytes that were indexed are ever served: a location is read (regular files only, under
the byte cap) and its SHA-256 must equal the asset's, which is what its id was derived from. A
file replaced or edited since it was indexed is not served, and no path outside the catalog's
locations (folder files and upload blobs alike) can be reached through this endpoint.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from PIL import Image

from core.images import ImageRejected, decode_bytes, read_limited
from search.engine import SearchService, UnknownAsset

router = APIRouter(tags=["assets"])

# The Pillow format names the catalog stores, as content types; anything else is served as
# bytes to download (browsers show none of the other formats).
CONTENT_TYPES: Final = {
    "JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
    "WEBP": "image/webp", "BMP": "image/bmp", "AVIF": "image/avif", "TIFF": "image/tiff",
    "HEIF": "image/heif", "ICO": "image/x-icon",
}  # fmt: skip
FALLBACK_TYPE: Final = "application/octet-stream"


def content_type(image_format: str | None) -> str:
    return CONTENT_TYPES.get((image_format or "").upper(), FALLBACK_TYPE)


def _indexed_bytes(paths: list[str], sha256: str, max_file_bytes: int) -> tuple[Path, bytes]:
    """The first location whose bytes are still the ones that were indexed."""
    for name in paths:
        path = Path(name)
        try:
            data = read_limited(path, max_file_bytes)
        except ImageRejected:
            continue  # gone, unreadable or grown past the cap: try the next location
        if hashlib.sha256(data).hexdigest() == sha256:
            return path, data
    raise UnknownAsset("no file of this asset still holds the bytes that were indexed")


@router.get(
    "/v1/assets/{asset_id}/image",
    response_class=Response,
    responses={200: {"content": {kind: {} for kind in sorted(set(CONTENT_TYPES.values()))}}},
)
def original_image(request: Request, asset_id: str) -> Response:
    """The asset's original file, byte for byte (EXIF included), with its content type."""
    service: SearchService = request.app.state.service
    info = service.asset(asset_id)
    tag = f'"{info.sha256}"'
    if tag in request.headers.get("if-none-match", ""):  # the bytes are named by their hash
        return Response(status_code=304, headers={"ETag": tag})
    path, data = _indexed_bytes(info.paths, info.sha256, request.app.state.settings.max_file_bytes)
    return Response(
        data,
        media_type=content_type(info.format),
        headers={
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.name)}",
            "Cache-Control": "private, max-age=3600",
            "ETag": tag,
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get(
    "/v1/assets/{asset_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def thumbnail(
    request: Request, asset_id: str, size: Annotated[int, Query(ge=16, le=1024)] = 256
) -> Response:
    """A JPEG of the indexed bytes at most ``size`` pixels on a side (EXIF rotation applied)."""
    service: SearchService = request.app.state.service
    info = service.asset(asset_id)
    settings = request.app.state.settings
    _, data = _indexed_bytes(info.paths, info.sha256, settings.max_file_bytes)
    with service.decoding():  # a few at a time: a large image takes hundreds of MB to decode
        image = decode_bytes(data, request.app.state.runtime.decode_limits()).image
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return Response(
        buffer.getvalue(), media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600", "ETag": f'"{info.sha256}-{size}"'},
    )  # fmt: skip
