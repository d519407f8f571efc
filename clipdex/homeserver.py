"""Who serves an embedded home: ``$CLIPDEX_HOME/serve.json``.

The embedded store admits one process. While ``clipdex serve`` owns a home it writes
``serve.json`` (its URL, its pid and a random local admin token, mode 0600) once it listens, and
removes it on a clean exit. The other commands on that home read it before opening the store:
when the pid lives and the URL answers, they work through that server instead. A file left by a
killed server names a dead pid or a silent URL and is ignored (the next ``serve`` replaces it).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

CLAIM_FILE = "serve.json"
CLAIM_ROUTE = "/claimz"  # 204 for the server's own local token, 403 for any other key
PROBE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class HomeServer:
    url: str
    pid: int
    token: str


def claim_path(home: Path) -> Path:
    return home / CLAIM_FILE


def new_token() -> str:
    return secrets.token_urlsafe(32)


def local_url(host: str, port: int) -> str:
    """The URL a process on this machine reaches the server at (a wildcard bind is loopback)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 (a bind address read, not one bound)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_claim(home: Path, server: HomeServer) -> None:
    """Atomically, readable by this user only (the token is a full-scope key)."""
    home.mkdir(parents=True, exist_ok=True)
    temporary = home / f".{CLAIM_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"url": server.url, "pid": server.pid, "token": server.token}, handle)
    os.replace(temporary, claim_path(home))


def remove_claim(home: Path, pid: int) -> None:
    """Remove the claim if this process wrote it (never another server's)."""
    found = _read(claim_path(home))
    if found is not None and found.pid == pid:
        claim_path(home).unlink(missing_ok=True)


def live_server(home: Path) -> HomeServer | None:
    """The server that owns ``home`` now, or None: no claim, a dead pid, or a URL where no
    server holds the claim's token (nothing listens, or another home's server took the port
    of a killed one whose pid the system gave to another process)."""
    found = _read(claim_path(home))
    if found is None or found.pid == os.getpid() or not _alive(found.pid):
        return None
    return found if _holds_token(found) else None


def _read(path: Path) -> HomeServer | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return HomeServer(str(data["url"]), int(data["pid"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:  # 0 and -1 signal process groups, which always "exist"
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _holds_token(server: HomeServer) -> bool:
    """Whether the server at the claim's URL answers for the claim's token (``CLAIM_ROUTE``)."""
    import httpx

    headers = {"X-API-Key": server.token}
    try:
        probe = httpx.get(f"{server.url}{CLAIM_ROUTE}", headers=headers, timeout=PROBE_SECONDS)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError):  # a URL httpx cannot even parse
        return False
    return probe.status_code == 204
