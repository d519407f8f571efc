"""``serve``: the HTTP API and the results page."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from pathlib import Path

    from fastapi import FastAPI

    from core.settings import Settings


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; any other name or address may be reachable."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def anonymous_exposure(host: str, settings: Settings) -> str | None:
    """Why serving on ``host`` would expose an open API, or None when it would not."""
    if settings.api_read_keys or settings.api_write_keys or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host} with no API keys: anyone who can reach it could search "
        "and upload; set CLIPDEX_API_READ_KEYS / CLIPDEX_API_WRITE_KEYS, bind to 127.0.0.1, "
        "or pass --allow-anonymous"
    )


def bind_problem(host: str, port: int) -> str | None:
    """Why uvicorn could not listen on ``host:port`` (a name that does not resolve, an address
    this machine lacks, a port in use), tried as asyncio's ``create_server`` binds: every
    address the name resolves to; None when it can."""
    import socket

    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in found:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except (OSError, UnicodeError, OverflowError) as error:
        cause = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return (
            f"cannot serve on {host} port {port} (--host/CLIPDEX_API_HOST, "
            f"--port/CLIPDEX_API_PORT): {cause}"
        )
    return None


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default 8700; 0: any free one).")
    ] = None,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous",
            help="Serve without API keys on an address other than loopback (anyone who can "
            "reach it may search and upload).",
        ),
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the libraries indexed (as `clipdex watch`).")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="A JSON start record, then JSON log lines on stderr.")
    ] = False,
) -> None:
    """Run the HTTP API and the results page (OpenAPI at /docs).

    Without API keys it serves only on loopback (127.0.0.0/8, ::1, localhost) unless given
    --allow-anonymous. On an embedded home (no CLIPDEX_QDRANT_URL) the other commands on this
    home (ingest, search, status, reindex...) work through this server while it runs.
    Example: clipdex serve --host 0.0.0.0 (with CLIPDEX_API_READ_KEYS set).
    """
    from clipdex.cli.common import checked_settings, expected_errors, fail

    with expected_errors():
        settings = checked_settings(json_output)
    bind = host or settings.api_host
    refusal = anonymous_exposure(bind, settings)
    if refusal is not None and not allow_anonymous:
        fail(refusal)
    bound = settings.api_port if port is None else port
    problem = bind_problem(bind, bound)
    if problem is not None:  # before the store and the model are opened
        fail(problem)

    from clipdex.catalog import open_ready_runtime
    from clipdex.homeserver import new_token
    from clipdex.http import create_app

    with expected_errors():  # a locked store, a catalog not at head, missing weights: one line
        runtime = open_ready_runtime(settings, owner=False)
        try:
            _ = runtime.store
            _ = runtime.encoder.identity  # load the model before the first request
        except BaseException:
            runtime.close()
            raise
    _warn_if_broker_unreachable(settings, json_output)
    embedded = settings.qdrant_url is None  # then this process owns the home's store
    token = new_token() if embedded else None
    app = create_app(settings, runtime, local_token=token)
    from clipdex.cli.libraries import server_watcher

    watcher = server_watcher(runtime, app.state.dispatch) if watch else None

    def close() -> None:  # closing the catalog's last connection checkpoints SQLite's WAL
        if watcher is not None:
            watcher.stop()
        runtime.close()

    try:
        if json_output:  # uvicorn's own "running on" line then says the port it got
            from clipdex.jsonlog import start_record

            start_record("serve", host=bind, port=bound, home=settings.home)
        _run(app, bind, bound, settings.home, token, json_output, close)
    finally:
        close()


def _warn_if_broker_unreachable(settings: Settings, json_logs: bool) -> None:
    """The server starts anyway (searches need no broker, and a broker may come up later) but
    says so now: its uploads then stay queued until the broker is up and `clipdex reconcile`
    runs, and a mistyped CLIPDEX_BROKER_URL would otherwise show only in per-send log lines."""
    if not settings.broker_url:
        return
    from clipdex.cli.common import warn
    from workers.app import broker_problem, make_celery

    problem = broker_problem(make_celery(settings), settings.broker_url, tries=1)
    if problem is not None:
        warn(
            f"{problem}; serving anyway, uploads stay queued until it is up and "
            "`clipdex reconcile` sends them",
            json_logs,
        )


def _run(
    app: FastAPI,
    host: str,
    port: int,
    home: Path,
    token: str | None,
    json_logs: bool = False,
    stopped: Callable[[], None] | None = None,
) -> None:
    """uvicorn; with ``token`` (an embedded home), ``serve.json`` names this server to the
    other commands once it listens, and goes away when it stops. ``stopped`` runs once the
    server has shut down: after a SIGTERM uvicorn re-raises the signal, which ends the
    process before any ``finally`` of its caller runs."""
    import os

    import uvicorn

    from clipdex.homeserver import HomeServer, local_url, remove_claim, write_claim

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if token is not None and self.started and self.servers:
                bound = self.servers[0].sockets[0].getsockname()[1]
                write_claim(home, HomeServer(local_url(host, bound), os.getpid(), token))

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if token is not None:  # before uvicorn re-raises a SIGTERM it caught, ending us
                remove_claim(home, os.getpid())
            await super().shutdown(sockets=sockets)
            if stopped is not None:
                stopped()

    try:
        from clipdex.jsonlog import uvicorn_log_config

        logs = uvicorn_log_config() if json_logs else uvicorn.config.LOGGING_CONFIG
        Server(uvicorn.Config(app, host=host, port=port, log_config=logs)).run()
    finally:
        if token is not None:
            remove_claim(home, os.getpid())


def register(app: typer.Typer) -> None:
    app.command()(serve)
