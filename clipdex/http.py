"""``create_app``: the HTTP API, wired from the search and ingest routers.

This is the only place that puts routers behind keys (read or write scope), decides how uploads
get indexed (workers or in-process) and maps exceptions to statuses (``clipdex.errors``). Every
client mistake is a 4xx with a message; anything else is a 500 with no traceback in the body.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError

from clipdex.admin_jobs import ServerJobs
from clipdex.auth import ApiGuard, KeyScopes, Read, Write
from clipdex.body_limit import BodyLimit
from clipdex.catalog import prepare_catalog
from clipdex.dispatch import dispatch_for, send_window_for
from clipdex.errors import EXPECTED, lazy_types, message_of, rule_for, status_of
from clipdex.head_requests import HeadAsGet
from clipdex.homeserver import CLAIM_ROUTE
from clipdex.queue_depth import queue_depth_reader
from core.runtime import Runtime, open_runtime
from core.settings import Settings
from ingest import admin_api, library_api
from ingest import api as ingest_api
from search.api import media
from search.api import routes as search_api
from search.api.metrics import install_metrics
from search.engine import LiveTarget, SearchService, target_for

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 409, 413, 415, 422, 503)
}


class LiveTargets:
    """The live target every request resolves through, and its refresher.

    The refresher re-reads the catalog's live version every ``interval`` seconds; when it
    changed (``clipdex reindex`` or ``index activate`` elsewhere, on a shared store), it loads
    that version's model and warms it with one text first, then swaps the whole target in one
    assignment. A request takes the target once, so it is answered by one version only."""

    def __init__(self, runtime: Runtime, interval: float) -> None:
        self._runtime = runtime
        self._interval = interval
        self._target: LiveTarget | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> LiveTarget:
        target = self._target
        if target is not None:
            return target
        with self._lock:
            if self._target is None:
                self._target = target_for(self._runtime, self._runtime.live_version())
            return self._target

    def refresh(self, swapped: bool = False) -> None:
        """One look at the catalog; a changed live version is loaded, warmed, then swapped.
        ``swapped``: this server just made it live (an activation, a reindex), so it is
        followed even before any search resolved a first version (a server started on an
        empty home); otherwise the first request resolves it, checked against the model."""
        current = self._target
        if current is None and not swapped:
            return  # the first request resolves it (and creates the first version if needed)
        live = self._runtime.catalog_live()
        if live is None or (current is not None and live.id == current.version.id):
            return
        target = target_for(self._runtime, live)
        target.encoder.encode_texts(["a photo"])  # load and warm the model before the swap
        with self._lock:
            self._target = target
            self._runtime.follow_live(live)
        log.info("now serving index version %d (%s)", live.id, live.collection)

    def start(self) -> None:
        """Resolve the live version now (checked against the configured model), so that the
        refresher follows a swap made before the first search, then start following."""
        try:
            if self._target is None and self._runtime.catalog_live() is not None:
                self.current()
        except Exception as error:  # each search answers it (a 503 naming the cause)
            log.warning("not serving searches yet: %s", _explain(error))
        if self._interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="live-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.refresh()
            except Exception:  # keep serving the current target; try again next time
                log.exception("could not follow the live index version")


def create_app(
    settings: Settings,
    runtime: Runtime | None = None,
    preload: bool = False,
    refresh_interval: float = 2.0,
    local_token: str | None = None,
) -> FastAPI:
    """With no runtime given, the app opens one on startup (checking the catalog is migrated,
    or migrating the embedded default) and closes it on shutdown. ``refresh_interval``: how
    often (seconds) the server re-reads the catalog's live index version; 0 never.
    ``local_token``: one more key with every scope (``clipdex serve`` on an embedded home
    gives it to the CLI through ``serve.json``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:  # the caller owns it and has attached it already
            app.state.targets.start()
            try:
                yield
            finally:
                _stop_sending(app)
                app.state.targets.stop()
            return
        opened = open_runtime(settings)
        try:
            prepare_catalog(settings, opened.engine, owner=False)
            _attach(app, opened, refresh_interval)
            if preload:
                _ = opened.encoder.identity  # load the model before the first request
            app.state.targets.start()
            yield
        finally:
            _stop_sending(app)
            if hasattr(app.state, "targets"):
                app.state.targets.stop()
            opened.close()

    app = FastAPI(
        title="clipdex",
        version="1",
        summary="Search an image library with words or images (CLIP).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.explain = _explain  # how /readyz words a failure: the error table's one line
    app.state.local_token = local_token
    app.state.dispatch = dispatch_for(settings, keep_going=True)  # the reconciler resends
    app.state.registry = install_metrics(app, queue_depth_reader(settings))
    if runtime is not None:
        _attach(app, runtime, refresh_interval)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)  # inside the key check
    # Keys and rate limits are decided from the headers, before anything reads the body. CORS
    # goes outside it, so a preflight (which carries no key) is answered by CORS alone.
    app.add_middleware(ApiGuard, settings=settings, scopes=key_scopes(), local_token=local_token)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
        )  # fmt: skip
    app.add_middleware(HeadAsGet)  # outermost: a HEAD is its GET from the key check on
    for router in (search_api.read_router, ingest_api.read_router, media.router):
        app.include_router(router, dependencies=[Read], responses=ERRORS)
    for router in (search_api.write_router, ingest_api.write_router, admin_api.write_router):
        app.include_router(router, dependencies=[Write], responses=ERRORS)
    app.include_router(admin_api.read_router, dependencies=[Read], responses=ERRORS)
    app.include_router(library_api.read_router, dependencies=[Read], responses=ERRORS)
    app.include_router(library_api.write_router, dependencies=[Write], responses=ERRORS)
    app.include_router(search_api.ops_router)
    if local_token is not None:
        app.add_api_route(CLAIM_ROUTE, _claim_probe(local_token), methods=["GET"], status_code=204)
    app.mount("/static", StaticFiles(directory=search_api.STATIC), name="static")  # the page
    _install_error_handlers(app)
    return app


def _claim_probe(local_token: str) -> Callable[[Request], Response]:
    """``CLAIM_ROUTE``: whether the caller holds this server's local token, so that a command
    reading ``serve.json`` knows the server at its URL is this home's (``live_server``)."""

    def probe(request: Request) -> Response:
        given = request.headers.get("X-API-Key", "")
        if hmac.compare_digest(given.encode(), local_token.encode()):
            return Response(status_code=204)
        return Response(status_code=403)

    return probe


def key_scopes() -> KeyScopes:
    """The routes behind a read key and those behind a write key, as included below."""
    return KeyScopes(
        read=(
            *search_api.read_router.routes,
            *ingest_api.read_router.routes,
            *media.router.routes,
            *library_api.read_router.routes,
        ),
        write=(
            *search_api.write_router.routes,
            *ingest_api.write_router.routes,
            *admin_api.write_router.routes,
            *library_api.write_router.routes,
        ),
    )


def _attach(app: FastAPI, runtime: Runtime, refresh_interval: float) -> None:
    app.state.runtime = runtime
    app.state.targets = targets = LiveTargets(runtime, refresh_interval)
    app.state.service = SearchService(runtime, targets.current)
    app.state.jobs = ServerJobs(runtime, targets, app.state.dispatch)
    app.state.send_window = send_window_for(
        app.state.settings, runtime.sessions, app.state.dispatch
    )


def _stop_sending(app: FastAPI) -> None:
    """At shutdown, before the runtime closes: send what the send window still holds."""
    window = getattr(app.state, "send_window", None)
    if window is not None:
        window.stop()


def _install_error_handlers(app: FastAPI) -> None:
    async def expected(_: Request, error: Exception) -> JSONResponse:
        rule = rule_for(error)
        if rule is not None and rule.server_fault:
            log.error("service unavailable: %s", message_of(error))
        return JSONResponse({"detail": message_of(error)}, status_code=status_of(error))

    if app.state.settings.qdrant_url:  # its store's errors are in the table: handle them too
        import qdrant_client.http.exceptions  # noqa: F401
    for kind in (*EXPECTED, *lazy_types()):
        app.add_exception_handler(kind, expected)

    async def invalid(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ValidationError | RequestValidationError)
        return JSONResponse({"detail": problems(error.errors())}, status_code=422)

    # Both render where and what only, never the input: an echoed input can be huge, and one
    # holding NaN or Infinity cannot be rendered as JSON at all.
    app.add_exception_handler(ValidationError, invalid)
    app.add_exception_handler(RequestValidationError, invalid)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        if rule_for(error) is not None:  # a table row matched by a type imported lazily
            return await expected(request, error)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)


MAX_PROBLEMS = 5
MAX_PART_CHARS = 120
MAX_DETAIL_CHARS = 1000


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problems(errors: Sequence[Any]) -> str:
    """One bounded line from validation errors: ``loc: msg`` for the first few, no inputs."""
    parts = []
    for error in errors[:MAX_PROBLEMS]:
        where = ".".join(_clipped(str(part), MAX_PART_CHARS) for part in error.get("loc", ()))
        what = _clipped(str(error.get("msg", "invalid")), 2 * MAX_PART_CHARS)
        parts.append(f"{where}: {what}" if where else what)
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more")
    return _clipped("; ".join(parts), MAX_DETAIL_CHARS) or "invalid request"


def _explain(error: Exception) -> str:
    return message_of(error) if rule_for(error) is not None else str(error)
