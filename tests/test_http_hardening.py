"""The HTTP server under hostile or careless use: unrenderable input, FIFOs named as images,
anonymous exposure, floods of requests and of bad keys, big bodies with bad keys."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from clipdex.catalog import open_ready_runtime
from clipdex.cli.serving import anonymous_exposure, is_loopback
from clipdex.http import create_app, key_scopes
from clipdex.ratelimit import TokenBuckets
from core.images import STAGE_READ, DecodeLimits, ImageRejected, decode_file, read_limited
from core.runtime import Runtime
from core.settings import Settings, load_settings
from ingest.run import ingest
from tests.conftest import REPO, cli_env
from tests.fakes import FakeEncoder
from tests.server import serve

pytestmark = pytest.mark.unit

ANYWHERE = "0.0.0.0"  # noqa: S104  (the address the refusal is about)
KEYS = {"api_read_keys": [SecretStr("r-key")], "api_write_keys": [SecretStr("w-key")]}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime.settings, runtime)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def with_settings(runtime: Runtime, **update: Any) -> Settings:
    return runtime.settings.model_copy(update=update)


# 1. Input that cannot be echoed: NaN / Infinity, and megabytes of it.


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "x", "min_score": NaN}',
        b'{"query": "x", "min_score": -Infinity}',
        b'{"terms": [{"text": "x", "weight": Infinity}]}',
        b'{"query": "x", "limit": NaN}',
        b'{"query": "x", "collapse_duplicates": NaN}',
        b'{"query": "x", "NaN": NaN}',
    ],
)
def test_nan_and_infinity_are_a_422_with_a_message(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/search", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "internal error" not in detail


@pytest.mark.parametrize(
    "body",
    [
        {"query": "x", "limit": "9" * 1_000_000},
        {"query": "x", "k" * 1_000_000: 1},
        {"query": "x" * 1_000_000},
        {"terms": [{"text": "x", "weight": "y" * 100_000}] * 10},
        {"query": "x", "filters": {"formats": ["f" * 50_000] * 20}},
    ],
)
def test_a_422_stays_small_however_large_the_input(
    client: TestClient, body: dict[str, Any]
) -> None:
    response = client.post("/v1/search", content=json.dumps(body).encode())
    assert response.status_code == 422
    assert len(response.content) < 2048
    assert response.json()["detail"]


def test_query_string_and_form_errors_are_small_too(client: TestClient) -> None:
    got = client.get("/v1/search", params={"q": "x", "limit": "z" * 20_000})
    assert got.status_code == 422 and len(got.content) < 2048
    broken = client.post("/v1/search", content=b'{"query": ' + b"[" * 100_000)
    assert broken.status_code == 422 and len(broken.content) < 2048


# 2. A FIFO (or any non-regular file) named as a path term.


def _release_readers(fifo: Path) -> None:
    """Give any reader blocked on the FIFO its end of file (only needed when the fix is gone)."""
    try:
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(descriptor)


def test_read_limited_refuses_non_regular_files_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(read_limited, path, 1000)
            try:
                with pytest.raises(ImageRejected) as caught:
                    reading.result(timeout=10)  # a TimeoutError here: it blocked on the FIFO
            finally:
                for _ in range(10):
                    _release_readers(fifo)
        assert caught.value.stage == STAGE_READ and "regular file" in caught.value.reason


def test_read_limited_gives_up_past_its_deadline(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\0" * (3 * 1024 * 1024))
    assert len(read_limited(big, 10**8)) == 3 * 1024 * 1024
    with pytest.raises(ImageRejected, match="longer than"):
        read_limited(big, 10**8, deadline_seconds=-1)
    with pytest.raises(ImageRejected, match="longer than"):
        decode_file(big, DecodeLimits(10**8, 10**8, read_deadline_seconds=-1))


def test_a_fifo_path_term_is_refused_and_the_server_stays_up(
    settings: Settings, fake_encoder: FakeEncoder, library: Path, tmp_path: Path
) -> None:
    root = tmp_path / "allowed"
    root.mkdir()
    fifo = root / "trap.jpg"
    os.mkfifo(fifo)
    settings = settings.model_copy(update={"allowed_image_roots": [root]})
    runtime = open_ready_runtime(settings, encoder=fake_encoder)
    ingest(runtime, [library])
    body = {"terms": [{"path": str(fifo)}]}
    try:
        with serve(create_app(settings, runtime)) as url:
            limits = httpx.Limits(max_connections=50)
            with httpx.Client(base_url=url, timeout=10, limits=limits) as http:
                assert http.get("/healthz").status_code == 200  # warm: imports, connections

                def ask(_: int) -> int:
                    return http.post("/v1/search", json=body).status_code

                started = time.monotonic()
                with ThreadPoolExecutor(50) as pool:
                    statuses = list(pool.map(ask, range(50)))
                assert all(400 <= status < 500 for status in statuses), statuses
                assert time.monotonic() - started < 30
                assert http.get("/healthz").status_code == 200
                assert "regular file" in http.post("/v1/search", json=body).json()["detail"]
    finally:
        for _ in range(100):
            _release_readers(fifo)
            time.sleep(0.01)
        runtime.close()


# 3. No keys and an address other than loopback.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_refuses_an_open_api_off_loopback(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "clipdex", "serve", "--host", ANYWHERE]
    command += ["--port", str(_free_port())]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=REPO, env=cli_env(tmp_path / "home"), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-anonymous" in lines[0] and ANYWHERE in lines[0]


def test_allow_anonymous_gets_past_the_refusal(tmp_path: Path) -> None:
    """With the flag, serve goes on to open the catalog (here a broken one, so it stops)."""
    env = cli_env(tmp_path / "home", CLIPDEX_DATABASE_URL="nonsense://")
    command = [sys.executable, "-m", "clipdex", "serve", "--host", ANYWHERE, "--allow-anonymous"]
    command += ["--port", str(_free_port())]
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    assert "refusing" not in stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_keys(host: str, settings: Settings) -> None:
    assert is_loopback(host) and anonymous_exposure(host, settings) is None


@pytest.mark.parametrize("host", [ANYWHERE, "::", "192.168.1.5", "example.com", "10.0.0.1"])
def test_other_addresses_need_keys(host: str, settings: Settings) -> None:
    assert not is_loopback(host)
    assert anonymous_exposure(host, settings) is not None
    keyed = settings.model_copy(update={"api_read_keys": [SecretStr("k")]})
    assert anonymous_exposure(host, keyed) is None


# 4. Rate limits: per key, per address, and for failed key checks.


def _call(app: Any, requests: list[tuple[str, str, str, str | None]]) -> list[httpx.Response]:
    """(address, method, path, key) each, through the app with that client address."""

    async def run() -> list[httpx.Response]:
        answers = []
        for address, method, path, key in requests:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                headers = {"X-API-Key": key} if key else {}
                answers.append(await http.request(method, path, headers=headers))
        return answers

    return asyncio.run(run())


def test_requests_per_address_are_limited(runtime: Runtime) -> None:
    app = create_app(with_settings(runtime, rate_limit_per_minute=3), runtime)
    first = _call(app, [("10.0.0.1", "GET", "/v1/jobs", None)] * 4)
    assert [r.status_code for r in first] == [200, 200, 200, 429]
    assert int(first[-1].headers["Retry-After"]) >= 1 and first[-1].json()["detail"]
    others = _call(
        app, [("10.0.0.2", "GET", "/v1/jobs", None), ("10.0.0.1", "GET", "/healthz", None)]
    )
    assert [r.status_code for r in others] == [200, 200]  # another address; probes are free


def test_requests_per_key_are_limited(runtime: Runtime) -> None:
    app = create_app(with_settings(runtime, rate_limit_per_minute=3, **KEYS), runtime)
    spent = _call(app, [("10.0.0.1", "GET", "/v1/jobs", "r-key")] * 3)
    assert [r.status_code for r in spent] == [200, 200, 200]
    later = _call(
        app, [("10.0.0.2", "GET", "/v1/jobs", "r-key"), ("10.0.0.3", "GET", "/v1/jobs", "w-key")]
    )
    assert [r.status_code for r in later] == [429, 200]  # the key is spent, not the address
    assert int(later[0].headers["Retry-After"]) >= 1


def test_failed_key_checks_block_the_address_by_default(runtime: Runtime) -> None:
    settings = with_settings(runtime, **KEYS)
    assert settings.auth_failures_per_minute == 20 and settings.rate_limit_per_minute == 0
    app = create_app(settings, runtime)
    tries = _call(app, [("10.0.0.9", "GET", "/v1/jobs", "guess")] * 20)
    assert {r.status_code for r in tries} == {403}
    blocked = _call(
        app, [("10.0.0.9", "GET", "/v1/jobs", "r-key"), ("10.0.0.9", "POST", "/v1/images", None)]
    )
    assert [r.status_code for r in blocked] == [429, 429]  # before any key check
    assert int(blocked[0].headers["Retry-After"]) >= 1
    fine = _call(
        app, [("10.0.0.8", "GET", "/v1/jobs", "r-key"), ("10.0.0.9", "GET", "/healthz", None)]
    )
    assert [r.status_code for r in fine] == [200, 200]
    many = _call(app, [("10.0.0.1", "GET", "/v1/jobs", "r-key")] * 30)
    assert {r.status_code for r in many} == {200}  # normal requests: no limit by default


def test_behind_a_local_proxy_the_lockout_is_per_forwarded_client(runtime: Runtime) -> None:
    """A reverse proxy on this machine sends X-Forwarded-For: one client guessing keys is
    locked out, the others behind the same proxy are not (README, exposing the API)."""
    app = create_app(with_settings(runtime, **KEYS), runtime)
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:

        def status(client: str, key: str) -> int:
            headers = {"X-Forwarded-For": client, "X-API-Key": key}
            return http.get("/v1/jobs", headers=headers).status_code

        assert {status("203.0.113.5", "guess") for _ in range(20)} == {403}
        assert status("203.0.113.5", "r-key") == 429
        assert status("203.0.113.6", "r-key") == 200


def test_token_buckets_refill_and_stay_bounded() -> None:
    now = [0.0]
    buckets = TokenBuckets(60, max_names=100, clock=lambda: now[0])
    assert buckets.take("a") is None
    for _ in range(59):
        assert buckets.take("a") is None
    wait = buckets.take("a")
    assert wait is not None and 0 < wait <= 1.0
    now[0] += 1.0
    assert buckets.wait("a") is None and buckets.take("a") is None
    for index in range(1000):
        buckets.take(f"n{index}")
    assert len(buckets) <= 100
    assert TokenBuckets(0).take("x") is None and not TokenBuckets(0).enabled


@pytest.mark.parametrize(
    "name,value",
    [
        ("rate_limit_per_minute", -1),
        ("auth_failures_per_minute", -5),
        ("rate_limit_per_minute", "x"),
    ],
)
def test_rate_settings_are_validated(tmp_path: Path, name: str, value: object) -> None:
    with pytest.raises(ValidationError):
        load_settings(home=tmp_path, **{name: value})


# 5. The key is checked before the body is read.


@pytest.mark.parametrize(
    "method,path,needed",
    [
        ("POST", "/v1/images", "write"),
        ("POST", "/v1/texts", "write"),
        ("GET", "/v1/texts", "read"),
        ("POST", "/v1/search", "read"),
        ("POST", "/v1/search/image", "read"),
        ("GET", "/v1/jobs/abc", "read"),
        ("GET", "/v1/assets/abc/thumbnail", "read"),
        ("GET", "/v1/nothing-here", "read"),
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("GET", "/", None),
    ],
)
def test_the_scope_each_route_needs(method: str, path: str, needed: str | None) -> None:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    assert key_scopes().needed(scope) == needed


def _post_head(url: str, key: str | None, length: int) -> bytes:
    """Send a POST /v1/images declaring ``length`` bytes and only the first 64 KiB of them;
    return what the server answers within 10 s."""
    host, port = url.removeprefix("http://").split(":")
    head = [
        "POST /v1/images HTTP/1.1",
        f"Host: {host}",
        "Content-Type: multipart/form-data; boundary=xyz",
        f"Content-Length: {length}",
    ]
    if key:
        head.append(f"X-API-Key: {key}")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        connection.sendall(b"--xyz\r\n" + b"\0" * 65536)
        return connection.recv(4096)


def test_a_big_upload_with_a_bad_key_is_refused_before_its_body(runtime: Runtime) -> None:
    with serve(create_app(with_settings(runtime, **KEYS), runtime)) as url:
        started = time.monotonic()
        assert _post_head(url, None, 10 * 1024 * 1024).startswith(b"HTTP/1.1 401")
        assert _post_head(url, "r-key", 10 * 1024 * 1024).startswith(b"HTTP/1.1 403")
        assert time.monotonic() - started < 5
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
