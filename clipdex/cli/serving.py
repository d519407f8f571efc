"""``serve``: the HTTP API and the results page."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8700).")] = None,
) -> None:
    """Run the HTTP API and the results page (OpenAPI at /docs)."""
    import uvicorn

    from clipdex.http import create_app
    from core.settings import load_settings

    settings = load_settings()
    app_ = create_app(settings, preload=True)
    uvicorn.run(app_, host=host or settings.api_host, port=port or settings.api_port)


def register(app: typer.Typer) -> None:
    app.command()(serve)
