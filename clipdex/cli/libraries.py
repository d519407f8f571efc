"""Libraries: ``library add|list|remove`` (folders kept indexed) and ``watch`` (keep them so)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clipdex.cli.common import JsonOption, given_path, opened_runtime, print_json
from clipdex.display import shown
from core.settings_checks import MAX_SECONDS

if TYPE_CHECKING:
    from core.runtime import Runtime
    from core.settings import Settings
    from ingest.libraries import LibraryInfo
    from ingest.queueing import SendBatch
    from ingest.watch import LibraryWatcher

SQLITE_SIDES = ("-journal", "-wal", "-shm")  # the files SQLite writes beside a database

library_app = typer.Typer(
    help="Folders clipdex keeps indexed: `clipdex ingest` with no folder rescans them all.\n\n"
    "Example: clipdex library add ~/Pictures && clipdex library list",
    no_args_is_help=True,
)


def add(
    path: Annotated[Path, typer.Argument(help="The library's top folder.", parser=given_path)],
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="A gitignore-style glob to leave out, e.g. 'raw/' or '*.tmp'."),
    ] = None,
    include_hidden: Annotated[
        bool,
        typer.Option(
            "--include-hidden",
            help="Keep hidden names (a leading dot) and system folders (@eaDir, .thumbnails).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Add a folder as a library (or set the rules of one); `clipdex ingest` then scans it.

    Example: clipdex library add ~/Pictures --exclude 'exports/' --exclude '*.tmp'"""
    from ingest.libraries import add_library, info_of, own_folders

    with opened_runtime() as runtime, runtime.sessions() as session:
        own = own_folders(runtime.settings)
        library, created = add_library(session, path, exclude or [], include_hidden, own)
        info = info_of(session, library)
        session.commit()
    if json_output:
        print_json({**info.as_dict(), "created": created})
        return
    verb = "added" if created else "updated"
    typer.echo(f"{verb} library {info.id}: {shown(info.path)}{_rules(info)}")
    typer.echo("run `clipdex ingest` to scan it", err=True)


def _rules(info: LibraryInfo) -> str:
    parts = [f"excludes {', '.join(shown(g) for g in info.excludes)}"] if info.excludes else []
    if info.include_hidden:
        parts.append("hidden names kept")
    return f" ({'; '.join(parts)})" if parts else ""


def describe(info: LibraryInfo) -> str:
    """One line per library, with its root flagged when it is missing."""
    scan = info.last_scan or {}
    seen = (
        f"last scan {info.last_scan_at:%Y-%m-%d %H:%M}: {scan.get('scanned', 0)} images, "
        f"{scan.get('excluded', 0)} excluded"
        if info.last_scan_at is not None
        else "never scanned"
    )
    flag = "  MISSING ROOT (not mounted? its paths are kept)" if info.missing else ""
    return f"{info.id:>3}  {shown(info.path)}{_rules(info)}  [{seen}]{flag}"


def list_(json_output: JsonOption = False) -> None:
    """The libraries, their rules and last scan; a root that is not there is flagged.

    Example: clipdex library list --json
    """
    from ingest.libraries import list_libraries

    with opened_runtime() as runtime, runtime.sessions() as session:
        found = list_libraries(session)
    if json_output:
        print_json([info.as_dict() for info in found])
        return
    for info in found:
        typer.echo(describe(info))
    if not found:
        typer.echo("no libraries; add one with `clipdex library add PATH`", err=True)


def remove(
    ref: Annotated[str, typer.Argument(metavar="PATH|ID", help="The library's path or id.")],
    json_output: JsonOption = False,
) -> None:
    """Forget a library: its paths leave the catalog, and its images leave the index unless
    another library or path holds the same bytes. The files themselves are not touched.

    Example: clipdex library remove /mnt/nas/old-photos"""
    from ingest.forget import remove_library

    with opened_runtime() as runtime:
        removed = remove_library(runtime, ref)
    if json_output:
        print_json(removed.as_dict())
        return
    typer.echo(
        f"removed library {shown(removed.path)}: {removed.paths} paths forgotten, "
        f"{removed.removed} images left the index"
    )


def watch(
    rescan: Annotated[
        int | None,
        typer.Option(
            help="Seconds between full rescans (default CLIPDEX_WATCH_RESCAN_SECONDS).",
            min=0,
            max=MAX_SECONDS,  # as CLIPDEX_WATCH_RESCAN_SECONDS
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Each round's ingest report as one JSON line.")
    ] = False,
) -> None:
    """Keep every library indexed: new, changed, moved and deleted files are picked up within
    seconds (debounced into batches), with a full rescan at start and every --rescan seconds.
    Runs until interrupted (Ctrl-C). With `clipdex serve`, use `serve --watch` instead.

    Example: clipdex library add ~/Pictures && clipdex watch"""
    import json
    import threading
    from collections.abc import Sequence

    from ingest.run import ingest as run_ingest
    from ingest.watch import LibraryWatcher

    with opened_runtime() as runtime:
        lock = threading.Lock()

        def ingest_paths(paths: Sequence[Path]) -> None:
            with lock:
                report = run_ingest(runtime, list(paths))
            if json_output:
                typer.echo(json.dumps({"paths": [str(p) for p in paths], **report.as_dict()}))
                return
            what = ", ".join(shown(str(p)) for p in paths) or "every library"
            typer.echo(
                f"{what}: {report.new} new, {report.modified} modified, {report.moved} moved, "
                f"{report.removed} removed, {report.encoded} encoded, {report.failed} failed"
            )
            for root in report.missing_roots:
                typer.echo(f"warning: library root {shown(root)} is missing", err=True)

        settings = runtime.settings
        seconds = settings.watch_rescan_seconds if rescan is None else rescan
        watcher = LibraryWatcher(
            runtime.sessions, ingest_paths, settings.watch_debounce_ms, seconds,
            own=clipdex_paths(settings),
        )  # fmt: skip
        typer.echo("watching the libraries; Ctrl-C to stop", err=True)
        try:
            watcher.run()
        except KeyboardInterrupt:
            typer.echo("stopped", err=True)


def server_watcher(runtime: Runtime, dispatch: SendBatch | None) -> LibraryWatcher:
    """``serve --watch``: the watch loop on a thread of the server, with the server's runtime
    (and its workers, if any); started here, stopped by the caller."""
    from ingest.run import ingest as run_ingest
    from ingest.watch import LibraryWatcher

    settings = runtime.settings
    watcher = LibraryWatcher(
        runtime.sessions,
        lambda paths: run_ingest(runtime, paths, dispatch=dispatch),
        settings.watch_debounce_ms,
        settings.watch_rescan_seconds,
        own=clipdex_paths(settings),
    )
    watcher.start()
    return watcher


def clipdex_paths(settings: Settings) -> list[Path]:
    """What a watch ignores in a library that holds the home: clipdex's own folders, and the
    files it writes beside them (the SQLite catalog and its journals, ``serve.json``). Each
    write there would otherwise start a rescan of the home, whose ingest writes again."""
    from clipdex.homeserver import claim_path
    from ingest.libraries import own_folders

    paths = [*own_folders(settings), claim_path(settings.home)]
    catalog = settings.catalog_file
    if catalog is not None:
        paths += [catalog, *(catalog.with_name(catalog.name + end) for end in SQLITE_SIDES)]
    return paths


def libraries_now() -> list[LibraryInfo]:
    """The libraries, read from the catalog alone (no store: a running `serve` may hold it),
    for `status` and `failures`; none when the catalog has no libraries table yet."""
    from sqlalchemy.exc import DBAPIError

    from clipdex.cli.common import checked_settings, expected_errors
    from core.catalog.db import make_engine, make_sessionmaker
    from ingest.libraries import list_libraries

    with expected_errors():
        engine = make_engine(checked_settings().catalog_url)
        try:
            with make_sessionmaker(engine)() as session:
                return list_libraries(session)
        except DBAPIError:
            return []
        finally:
            engine.dispose()


def register(app: typer.Typer) -> None:
    library_app.command()(add)
    library_app.command("list")(list_)
    library_app.command()(remove)
    app.add_typer(library_app, name="library")
    app.command()(watch)
