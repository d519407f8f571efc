"""API keys with a read and a write scope, and the guard that checks them before a body is read.

With no keys configured the API is open; ``clipdex serve`` then binds only to loopback unless
told ``--allow-anonymous``.

:class:`ApiGuard` is pure ASGI middleware in front of the app. For a route that needs a key it
decides from the headers alone (401, 403, or 429 from the rate limits) before the app reads one
byte of the body, so a large upload with a bad key costs the server nothing. The per-router
``Read`` / ``Write`` dependencies stay as a second line and answer the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from clipdex.ratelimit import TokenBuckets, retry_after
from core.settings import Settings

KeyScope = Literal["read", "write"]
HEADER = "X-API-Key"
_header = APIKeyHeader(name=HEADER, auto_error=False)
_MISSING = "missing API key (X-API-Key header)"
_FORBIDDEN = "this API key may not do that"


def _matches(given: str, keys: list[str]) -> bool:
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


def denial(
    settings: Settings, given: str | None, write: bool, local_token: str | None = None
) -> tuple[int, str] | None:
    """Why this key may not do this (status and message), or None when it may.
    ``local_token`` (the home server's admin token, see ``clipdex.homeserver``) may do all."""
    if given and local_token and _matches(given, [local_token]):
        return None
    read_keys = [k.get_secret_value() for k in settings.api_read_keys]
    write_keys = [k.get_secret_value() for k in settings.api_write_keys]
    if not read_keys and not write_keys:
        return None
    if not given:
        return status.HTTP_401_UNAUTHORIZED, _MISSING
    if _matches(given, write_keys):
        return None
    if not write and _matches(given, read_keys):
        return None
    return status.HTTP_403_FORBIDDEN, _FORBIDDEN


def _check(request: Request, given: str | None, write: bool) -> None:
    state = request.app.state
    refused = denial(state.settings, given, write, getattr(state, "local_token", None))
    if refused is None:
        return
    code, message = refused
    headers = {"WWW-Authenticate": "ApiKey"} if code == status.HTTP_401_UNAUTHORIZED else None
    raise HTTPException(code, message, headers=headers)


def require_read(request: Request, key: Annotated[str | None, Depends(_header)]) -> None:
    _check(request, key, write=False)


def require_write(request: Request, key: Annotated[str | None, Depends(_header)]) -> None:
    _check(request, key, write=True)


Read = Depends(require_read)
Write = Depends(require_write)


@dataclass(frozen=True, slots=True)
class KeyScopes:
    """Which routes need a read key and which a write key (those of the routers that
    ``create_app`` puts behind ``Read`` and ``Write``)."""

    read: tuple[BaseRoute, ...]
    write: tuple[BaseRoute, ...]

    def needed(self, scope: Scope) -> KeyScope | None:
        """Write for a write route; read for a read route and for anything else under
        ``/v1`` (unknown paths included); None for the probes, metrics and the page."""
        if any(route.matches(scope)[0] is Match.FULL for route in self.write):
            return "write"
        if any(route.matches(scope)[0] is not Match.NONE for route in self.read):
            return "read"
        path: str = scope.get("path", "")
        return "read" if path == "/v1" or path.startswith("/v1/") else None


class ApiGuard:
    """Rate limits and the key check, from the request line and headers only."""

    def __init__(
        self, app: ASGIApp, settings: Settings, scopes: KeyScopes, local_token: str | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.scopes = scopes
        self.local_token = local_token
        self.requests = TokenBuckets(settings.rate_limit_per_minute)
        self.failures = TokenBuckets(settings.auth_failures_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = self.scopes.needed(scope)
        if needed is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = self.failures.wait(address)
        if wait is not None:
            await _too_many(wait, "too many failed API key checks from this address")(
                scope, receive, send
            )
            return
        given = _header_value(scope)
        refused = denial(self.settings, given, needed == "write", self.local_token)
        if refused is not None:
            self.failures.take(address)
            code, message = refused
            headers = {"WWW-Authenticate": "ApiKey"} if code == 401 else None
            await JSONResponse({"detail": message}, code, headers)(scope, receive, send)
            return
        wait = self.requests.take(f"address:{address}")
        if wait is None and given:
            wait = self.requests.take(f"key:{hashlib.sha256(given.encode()).hexdigest()}")
        if wait is not None:
            await _too_many(wait, "rate limit exceeded")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _header_value(scope: Scope) -> str | None:
    wanted = HEADER.lower().encode()
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def _too_many(wait: float, message: str) -> JSONResponse:
    after = retry_after(wait)
    return JSONResponse(
        {"detail": f"{message}; retry after {after} s"}, 429, {"Retry-After": after}
    )
