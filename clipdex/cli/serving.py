"""``serve``: the HTTP API and the results page."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
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


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8700).")] = None,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous",
            help="Serve without API keys on an address other than loopback (anyone who can "
            "reach it may search and upload).",
        ),
    ] = False,
) -> None:
    """Run the HTTP API and the results page (OpenAPI at /docs).

    Without API keys it serves only on loopback (127.0.0.0/8, ::1, localhost) unless given
    --allow-anonymous. Example: clipdex serve --host 0.0.0.0 (with CLIPDEX_API_READ_KEYS set).
    """
    from clipdex.cli.common import checked_settings, expected_errors, fail

    with expected_errors():
        settings = checked_settings()
    bind = host or settings.api_host
    refusal = anonymous_exposure(bind, settings)
    if refusal is not None and not allow_anonymous:
        fail(refusal)

    import uvicorn

    from clipdex.catalog import open_ready_runtime
    from clipdex.http import create_app

    with expected_errors():  # a locked store, a catalog not at head, missing weights: one line
        runtime = open_ready_runtime(settings, owner=False)
        try:
            _ = runtime.store
            _ = runtime.encoder.identity  # load the model before the first request
        except BaseException:
            runtime.close()
            raise
    try:
        uvicorn.run(create_app(settings, runtime), host=bind, port=port or settings.api_port)
    finally:
        runtime.close()


def register(app: typer.Typer) -> None:
    app.command()(serve)
