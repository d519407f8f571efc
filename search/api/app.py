"""``create_app``: the HTTP API over one runtime. Every client mistake maps to a 4xx with a
message; anything else is a 500 with no traceback in the body."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from clipdex.catalog.index_versions import ModelMismatch
from clipdex.encoder import ModelUnavailable
from clipdex.images import STAGE_READ, ImageRejected, RejectKind
from clipdex.runtime import NoIndexYet, Runtime, open_runtime
from clipdex.settings import Settings
from clipdex.store.base import StoreError
from ingest.uploads import UnknownJob
from search.api.jobs import router as jobs_router
from search.api.metrics import install_metrics
from search.api.routes import router
from search.engine import SearchService, UnknownAsset
from search.query import BadQuery
from search.texts import UnknownTextSet

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, runtime: Runtime | None = None, preload: bool = False
) -> FastAPI:
    """With no runtime given, the app opens one on startup and closes it on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:  # the caller owns it and has attached it already
            yield
            return
        opened = open_runtime(settings)
        _attach(app, opened)
        if preload:
            _ = opened.encoder.identity  # load the model before the first request
        try:
            yield
        finally:
            opened.close()

    app = FastAPI(
        title="clipdex",
        version="1",
        summary="Search an image library with words or images (CLIP).",
        lifespan=lifespan,
        # 413 from the declared length before reading, or as soon as a streamed body passes it.
        max_body_size=settings.max_upload_bytes,
    )
    app.state.settings = settings
    app.state.registry = install_metrics(app)
    if runtime is not None:
        _attach(app, runtime)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )  # fmt: skip
    app.include_router(router)
    app.include_router(jobs_router)
    _install_error_handlers(app)
    return app


def _attach(app: FastAPI, runtime: Runtime) -> None:
    app.state.runtime = runtime
    app.state.service = SearchService(runtime)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadQuery)
    async def bad_query(_: Request, error: BadQuery) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(ValidationError)
    async def invalid(_: Request, error: ValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        return _error(422, problems or "invalid request")

    @app.exception_handler(ImageRejected)
    async def bad_image(_: Request, error: ImageRejected) -> JSONResponse:
        if error.kind is RejectKind.TOO_LARGE:
            return _error(413, error.reason)
        if error.stage == STAGE_READ:
            return _error(422, error.reason)
        if error.kind is RejectKind.UNSUPPORTED:
            return _error(415, f"unsupported image: {error.reason}")
        return _error(422, f"cannot use that image: {error.reason}")

    @app.exception_handler(UnknownAsset)
    @app.exception_handler(UnknownTextSet)
    @app.exception_handler(UnknownJob)
    async def not_found(_: Request, error: LookupError) -> JSONResponse:
        return _error(404, str(error.args[0]) if error.args else "not found")

    @app.exception_handler(NoIndexYet)
    async def empty(_: Request, error: NoIndexYet) -> JSONResponse:
        return _error(409, str(error))

    @app.exception_handler(ModelUnavailable)
    @app.exception_handler(ModelMismatch)
    @app.exception_handler(StoreError)
    async def unavailable(_: Request, error: Exception) -> JSONResponse:
        log.error("service unavailable: %s", error)
        return _error(503, str(error))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal error; see the server log")
