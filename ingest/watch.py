"""Keep the libraries indexed as files come and go (``clipdex watch``, ``serve --watch``).

File system events (inotify, through ``watchfiles``) are debounced into batches; a batch becomes
one ingest of the folders the changed paths are in: scanning the folder a file left is what
sees a deletion, and scanning both folders of a move in one run is what sees the move (the
vector is reused). Paths a library's rules leave out (hidden, system folders, excludes) start
nothing. A periodic full rescan of every library is the safety net for missed events (a full
event queue, a network share that sends none). What to run is the caller's: ``ingest_paths``
gets the folders of a batch, or an empty list for a full rescan (``ingest.run.ingest``'s own
meaning of "every library").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog.models import Library
from ingest.scan import ScanRules

log = logging.getLogger(__name__)
IngestPaths = Callable[[list[Path]], object]
TICK_MS = 1000  # how often the loop looks at the library list and the rescan clock
RETRY_S = 30  # after a failed round (the error is logged), the next try


@dataclass(frozen=True, slots=True)
class WatchedLibrary:
    root: Path
    excludes: tuple[str, ...] = ()
    include_hidden: bool = False
    rules: ScanRules = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        rules = ScanRules(self.root, self.excludes, self.include_hidden)
        object.__setattr__(self, "rules", rules)

    def keeps(self, path: Path) -> bool:
        """Whether the rules keep ``path``: no folder on the way to it, nor it, left out."""
        current = self.root
        parts = path.relative_to(self.root).parts
        for depth, name in enumerate(parts):
            current = current / name
            folder = depth < len(parts) - 1 or current.is_dir()
            if self.rules.excludes(str(current), name, folder):
                return False
        return True


def watched_libraries(sessions: sessionmaker[Session]) -> list[WatchedLibrary]:
    with sessions() as session:
        libraries = session.scalars(select(Library).order_by(Library.path)).all()
        return [
            WatchedLibrary(Path(lib.path), tuple(lib.excludes or ()), lib.include_hidden)
            for lib in libraries
        ]


def folders_to_scan(
    changed: Iterable[str], libraries: Sequence[WatchedLibrary], own: Sequence[Path] = ()
) -> list[Path]:
    """The folders to rescan for a batch of changed paths: each path's folder (or the nearest
    one still there, inside its library), for paths a library's rules keep and outside
    clipdex's ``own`` folders (a home inside a library: its uploads and catalog change all the
    time, and are no library's files); a folder inside another of the batch is covered by it."""
    folders: set[Path] = set()
    for text in changed:
        path = Path(text)
        library = next((lib for lib in libraries if path.is_relative_to(lib.root)), None)
        if library is None or path == library.root or not library.keeps(path):
            continue
        if any(path.is_relative_to(folder) for folder in own):
            continue
        folder = path.parent
        while folder != library.root and not folder.is_dir():
            folder = folder.parent
        folders.add(folder)
    kept: list[Path] = []
    for folder in sorted(folders):
        if not any(folder.is_relative_to(parent) for parent in kept):
            kept.append(folder)
    return kept


class LibraryWatcher:
    """Watches every library (re-read as they are added or removed) on a thread of its own."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        ingest_paths: IngestPaths,
        debounce_ms: int,
        rescan_seconds: float,
        rescan_first: bool = True,
        own: Sequence[Path] = (),
    ) -> None:
        self._sessions = sessions
        self._own = list(own)
        self._ingest = ingest_paths
        self._debounce_ms = debounce_ms
        self._rescan_seconds = rescan_seconds
        self._rescan_first = rescan_first
        self.stop_event = threading.Event()
        self._next_rescan = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="library-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def run(self) -> None:
        """Until ``stop_event``: a full rescan first (what changed while nobody watched), then
        one ingest per batch of events, and a full rescan every ``rescan_seconds``."""
        self._next_rescan = time.monotonic() if self._rescan_first else self._after_rescan()
        while not self.stop_event.is_set():
            try:
                self._round()
            except Exception:  # inotify's watch limit, a root unmounted, the catalog away...
                log.exception("watching the libraries failed; trying again in %d s", RETRY_S)
                self.stop_event.wait(RETRY_S)

    def _round(self) -> None:
        libraries = watched_libraries(self._sessions)
        roots = [lib.root for lib in libraries if lib.root.is_dir()]
        if not roots:
            self._rescan_if_due(libraries)
            self.stop_event.wait(TICK_MS / 1000)
            return
        self._watch(libraries, roots)

    def _rescan_if_due(self, libraries: list[WatchedLibrary]) -> None:
        if libraries and time.monotonic() >= self._next_rescan:
            self._safely([])
            self._next_rescan = self._after_rescan()

    def _watch(self, libraries: list[WatchedLibrary], roots: list[Path]) -> None:
        """Watch ``roots`` until the library list changes or stop; events that arrive during
        an ingest wait in the watcher for the next batch."""
        import watchfiles

        batches = watchfiles.watch(
            *roots, watch_filter=None, debounce=self._debounce_ms, step=50,
            stop_event=self.stop_event, rust_timeout=TICK_MS, yield_on_timeout=True,
            raise_interrupt=True, ignore_permission_denied=True,
        )  # fmt: skip
        for changes in batches:
            if changes:
                changed = (path for _, path in changes)
                folders = folders_to_scan(changed, libraries, self._own)
                if folders:
                    self._safely(folders)
            self._rescan_if_due(libraries)
            if watched_libraries(self._sessions) != libraries:
                break

    def _after_rescan(self) -> float:
        return time.monotonic() + self._rescan_seconds if self._rescan_seconds > 0 else float("inf")

    def _safely(self, paths: list[Path]) -> None:
        try:
            self._ingest(paths)
        except Exception:  # keep watching: the next batch or rescan tries again
            log.exception("ingest of %s failed", [str(p) for p in paths] or "every library")
