"""API keys with a read and a write scope. With no keys configured the API is open; it then
binds to loopback by default."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from core.settings import Settings

_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def _matches(given: str, keys: list[str]) -> bool:
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


def _check(request: Request, given: str | None, write: bool) -> None:
    settings: Settings = request.app.state.settings
    read_keys = [k.get_secret_value() for k in settings.api_read_keys]
    write_keys = [k.get_secret_value() for k in settings.api_write_keys]
    if not read_keys and not write_keys:
        return
    if not given:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API key (X-API-Key header)",
            headers={"WWW-Authenticate": "ApiKey"},
        )  # fmt: skip
    if _matches(given, write_keys):
        return
    if not write and _matches(given, read_keys):
        return
    raise HTTPException(status.HTTP_403_FORBIDDEN, "this API key may not do that")


def require_read(request: Request, key: Annotated[str | None, Depends(_header)]) -> None:
    _check(request, key, write=False)


def require_write(request: Request, key: Annotated[str | None, Depends(_header)]) -> None:
    _check(request, key, write=True)


Read = Depends(require_read)
Write = Depends(require_write)
