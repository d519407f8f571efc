"""The cap on a request body, answered as every other error is: a JSON 413 with a message.

Starlette's own limit (FastAPI's ``max_body_size``) answers in plain text, and replaces any
response to a request whose declared length is over the cap with that plain text, so it is
not used."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Refuse a body over ``limit`` bytes: from its declared length before anything reads it,
    or as soon as a streamed (chunked) body passes it, whoever is reading it then."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.message = (
            f"the request body is larger than this server's limit of {limit} bytes "
            "(CLIPDEX_MAX_UPLOAD_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(Headers(scope=scope).get("content-length"))
        if declared is not None and declared > self.limit:
            await JSONResponse({"detail": self.message}, 413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # FastAPI answers an HTTPException raised while it reads a body as JSON
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited, send)


def _declared_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the server refuses a malformed length before we see it
