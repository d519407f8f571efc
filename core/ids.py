"""Content identity: an asset id is a UUIDv5 of the SHA-256 of the file's bytes."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

# Fixed forever: changing it would change every asset id and every Qdrant point id.
ASSET_NAMESPACE = uuid.UUID("5b0f2c1e-8d4a-5c4e-9a51-0c1d9e0a7c3b")
_CHUNK = 1024 * 1024


def asset_id_for_digest(sha256_hex: str) -> str:
    """The asset id (and Qdrant point id) for content with this SHA-256."""
    return str(uuid.uuid5(ASSET_NAMESPACE, sha256_hex))


def sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_of_file(path: Path) -> str:
    """Hash a file in chunks (hashlib releases the GIL, so threads overlap)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
