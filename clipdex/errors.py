"""One table for every expected failure: the HTTP status it maps to and the one line a user
reads (from the CLI or in a 4xx/5xx body). Anything not in the table is a bug: a 500 with no
traceback in the body, and a traceback in the log.

Importing this module imports the subsystems' exception types only (no torch, no model).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from core.catalog.db import BadCatalogUrl, CatalogDamaged, CatalogUnreachable
from core.catalog.index_versions import ModelMismatch
from core.encoder import ModelUnavailable
from core.images import STAGE_READ, ImageRejected, RejectKind
from core.paths import UnusablePath
from core.runtime import NoIndexYet, UnknownIndexVersion
from core.store.base import StoreError
from ingest.libraries import UnknownLibrary
from ingest.manifest import BadManifest
from ingest.metadata import BadMetadata, NoSuchAsset
from ingest.queueing import SendRefused
from ingest.scan import UnusableRoot
from ingest.uploads import BadUpload, UnknownJob
from migrations.runner import CatalogNotAtHead
from search.engine import UnknownAsset
from search.query import BadQuery
from search.texts import UnknownTextSet


class BadSettings(ValueError):
    """A ``CLIPDEX_*`` value that the settings refuse, as one line naming the variable."""

    @classmethod
    def of(cls, error: ValidationError) -> BadSettings:
        parts = []
        for detail in error.errors(include_url=False, include_input=False):
            names = [str(part) for part in detail["loc"] if not isinstance(part, int)]
            where = f"CLIPDEX_{names[0].upper()}: " if names else ""
            parts.append(where + str(detail["msg"]))
        return cls("; ".join(parts) or "invalid CLIPDEX_* settings")


@dataclass(frozen=True, slots=True)
class Rule:
    types: tuple[type[Exception], ...]
    status: int | Callable[[Exception], int]
    message: Callable[[Exception], str] = str
    server_fault: bool = False  # logged as an error by the API (503s)
    # More types, looked up when an error is matched: those of a package that may not be
    # imported (then none of its errors can occur). Not in EXPECTED; see is_expected.
    lazy: Callable[[], tuple[type[Exception], ...]] | None = None

    def matches(self, error: Exception) -> bool:
        return isinstance(error, self.types) or (
            self.lazy is not None and isinstance(error, self.lazy())
        )


def _lookup_message(error: Exception) -> str:
    return str(error.args[0]) if error.args else "not found"


def _image_status(error: Exception) -> int:
    assert isinstance(error, ImageRejected)
    if error.kind is RejectKind.TOO_LARGE:
        return 413
    if error.stage == STAGE_READ:
        return 422
    if error.kind is RejectKind.UNSUPPORTED:
        return 415
    return 422


def _image_message(error: Exception) -> str:
    assert isinstance(error, ImageRejected)
    if error.kind is RejectKind.TOO_LARGE:
        return error.reason
    if error.kind is RejectKind.UNSUPPORTED:
        return f"unsupported image: {error.reason}"
    return f"cannot use that image: {error.reason}"


def _qdrant_errors() -> tuple[type[Exception], ...]:
    """qdrant-client's transport and response errors, if qdrant-client was imported (importing
    it here would cost every command half a second)."""
    module = sys.modules.get("qdrant_client.http.exceptions")
    if module is None:
        return ()
    return (module.ResponseHandlingException, module.UnexpectedResponse)


def _server_of(error: BaseException) -> str:
    """`` at scheme://host:port`` of the request an httpx error was about, or ``""``."""
    try:
        url = error.request.url if isinstance(error, httpx.RequestError) else None
    except RuntimeError:  # an httpx error raised without its request
        url = None
    if url is None:
        return ""
    port = f":{url.port}" if url.port is not None else ""
    return f" at {url.scheme}://{url.host}{port}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _unreachable_message(error: Exception) -> str:
    """A Qdrant server or another HTTP service that could not be reached or answered an
    error: where, and the cause, on one line (no API key or password: only scheme, host,
    port)."""
    source = getattr(error, "source", None)  # qdrant-client wraps the httpx error
    if isinstance(source, BaseException):
        cause = _one_line(str(source)) or type(source).__name__
        return f"cannot reach the Qdrant server{_server_of(source)} (CLIPDEX_QDRANT_URL): {cause}"
    status = getattr(error, "status_code", None)
    if status is not None:  # UnexpectedResponse: the server answered, with an error
        reason = getattr(error, "reason_phrase", "") or ""
        content = bytes(getattr(error, "content", b"") or b"")[:200].decode(errors="replace")
        return _one_line(
            f"the Qdrant server (CLIPDEX_QDRANT_URL) answered {status} {reason}: {content}"
        )
    cause = _one_line(str(error)) or type(error).__name__
    return f"cannot reach{_server_of(error) or ' a server'}: {cause}"


RULES: tuple[Rule, ...] = (
    Rule((BadQuery, BadUpload, UnusableRoot, UnusablePath), 422),
    Rule((ImageRejected,), _image_status, _image_message),
    Rule(
        (UnknownAsset, UnknownTextSet, UnknownJob, UnknownIndexVersion, UnknownLibrary),
        404,
        _lookup_message,
    ),
    Rule((NoIndexYet,), 409),
    Rule((ModelUnavailable, ModelMismatch, StoreError, CatalogNotAtHead), 503, server_fault=True),
    # Configuration: a refused CLIPDEX_* value, a database URL that is not one, or a catalog
    # that cannot be reached (the message names the URL without its password).
    Rule((BadSettings, BadCatalogUrl, CatalogUnreachable, CatalogDamaged), 503, server_fault=True),
    # A dependency that cannot be reached: the broker (a command's send), a Qdrant server
    # (qdrant-client's transport and response errors) or another HTTP service.
    Rule((SendRefused,), 503, server_fault=True),
    Rule(
        (httpx.TransportError,),
        503,
        _unreachable_message,
        server_fault=True,
        lazy=_qdrant_errors,
    ),
    Rule((BadMetadata, BadManifest), 422),  # the user's own metadata, manifests
    Rule((NoSuchAsset,), 404, _lookup_message),
)

EXPECTED: tuple[type[Exception], ...] = tuple(t for rule in RULES for t in rule.types)


def rule_for(error: Exception) -> Rule | None:
    for rule in RULES:
        if rule.matches(error):
            return rule
    return None


def lazy_types() -> tuple[type[Exception], ...]:
    """The table's lazily looked-up types that are imported now (the HTTP app gives each a
    handler of its own; call it after importing what the process uses)."""
    return tuple(t for rule in RULES if rule.lazy is not None for t in rule.lazy())


def is_expected(error: Exception) -> bool:
    """In the table, lazily looked-up types included (``except EXPECTED`` misses those)."""
    return rule_for(error) is not None


def status_of(error: Exception) -> int:
    rule = rule_for(error)
    if rule is None:
        return 500
    return rule.status if isinstance(rule.status, int) else rule.status(error)


def message_of(error: Exception) -> str:
    rule = rule_for(error)
    return rule.message(error) if rule is not None else "internal error; see the server log"
