"""A real ``clipdex serve`` subprocess on an embedded home, for the home-server tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clipdex.homeserver import HomeServer, live_server

START_SECONDS = 240  # a loaded 2-core machine imports torch and opens the kernel slowly


def clipdex(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "clipdex", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == code, (args, done.returncode, done.stderr[-2000:])
    return done


@contextmanager
def serving(
    home: Path, env: dict[str, str], log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], HomeServer]]:
    """Start ``clipdex serve --port 0`` and wait (polling) until ``serve.json`` names it and
    its URL answers; stop it (SIGTERM) afterwards unless the test killed it."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "clipdex", "serve", "--port", "0"],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_SECONDS
        server = live_server(home)
        while server is None or server.pid != process.pid:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "clipdex serve did not start in time"
            time.sleep(0.1)
            server = live_server(home)
        yield process, server
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
