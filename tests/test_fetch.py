"""URL downloads for manifests: size cap, deadline, redirects checked hop by hop, and private
addresses refused (after DNS resolution) unless a setting allows them."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ingest.fetch import FetchPolicy, FetchRefused, fetch, is_public

pytestmark = pytest.mark.unit

BODY = b"\x89PNG not really, but bytes" * 100
LOOPBACK = FetchPolicy.of(10_000, 5.0, False, ["127.0.0.1/32"])


class _Handler(BaseHTTPRequestHandler):
    hosts: list[str] = []  # noqa: RUF012 -- the Host headers the server saw

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        if self.path == "/image":
            self._send(200, {"Content-Length": str(len(BODY))}, BODY)
        elif self.path == "/hop":
            self._send(302, {"Location": "/image", "Content-Length": "0"})
        elif self.path == "/to-metadata":
            self._send(302, {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif self.path == "/loop":
            self._send(302, {"Location": "/loop", "Content-Length": "0"})
        elif self.path == "/big-undeclared":  # no Content-Length: the cap counts what arrives
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 1000)
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif self.path == "/stall":
            time.sleep(5)
        else:
            self._send(404, {"Content-Length": "0"})


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.hosts = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
     "0.0.0.0",  # noqa: S104
     "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1",
     "ff02::1", "::", "2002:a9fe:a9fe::", "2002:7f00:1::"],  # 6to4 of 169.254/127.0
)  # fmt: skip
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_an_allowed_loopback_url_downloads(server: str) -> None:
    assert fetch(f"{server}/image", LOOPBACK) == BODY


def test_loopback_is_refused_by_default_before_any_connection(server: str) -> None:
    default = FetchPolicy.of(10_000, 5.0, False, [])
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.1.*private or reserved"):
        fetch(f"{server}/image", default)
    with pytest.raises(FetchRefused, match="private or reserved"):
        fetch(f"http://localhost:{server.rsplit(':', 1)[1]}/image", default)
    assert _Handler.hosts == []  # refused before connecting


def test_allow_private_admits_everything(server: str) -> None:
    assert fetch(f"{server}/image", FetchPolicy.of(10_000, 5.0, True, [])) == BODY


def test_redirects_are_followed_and_each_hop_is_checked(server: str) -> None:
    assert fetch(f"{server}/hop", LOOPBACK) == BODY
    with pytest.raises(FetchRefused, match=r"169\.254\.169\.254"):
        fetch(f"{server}/to-metadata", LOOPBACK)
    with pytest.raises(FetchRefused, match="redirects"):
        fetch(f"{server}/loop", LOOPBACK)


def test_the_connection_goes_to_the_checked_address(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, checked, and that address is connected to; the server still
    sees the original host name (a second, rebinding answer is never asked for)."""
    answers = iter(["127.0.0.1", "10.0.0.99"])  # rebinding: a second lookup would get this
    real = socket.getaddrinfo

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host == "photos.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = server.rsplit(":", 1)[1]
    assert fetch(f"http://photos.example:{port}/image", LOOPBACK) == BODY
    assert _Handler.hosts == [f"photos.example:{port}"]


def test_oversize_downloads_are_refused(server: str) -> None:
    small = FetchPolicy.of(1000, 5.0, False, ["127.0.0.1/32"])
    with pytest.raises(FetchRefused, match="above the 1000 byte cap"):
        fetch(f"{server}/image", small)  # declared Content-Length
    with pytest.raises(FetchRefused, match="above the 1000 byte cap"):
        fetch(f"{server}/big-undeclared", small)  # counted while reading


@pytest.mark.parametrize("route", ["/slow", "/stall"])
def test_a_slow_server_hits_the_deadline(server: str, route: str) -> None:
    quick = FetchPolicy.of(10_000, 1.0, False, ["127.0.0.1/32"])
    started = time.monotonic()
    with pytest.raises(FetchRefused, match="deadline"):
        fetch(f"{server}{route}", quick)
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("url", "reason"),
    [("ftp://127.0.0.1/x", "only http and https"), ("http:///nohost", "only http and https"),
     ("http://no-such-host.invalid/x", "cannot resolve")],
)  # fmt: skip
def test_bad_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(FetchRefused, match=reason):
        fetch(url, LOOPBACK)


def test_an_http_error_status_is_a_refusal(server: str) -> None:
    with pytest.raises(FetchRefused, match="HTTP 404"):
        fetch(f"{server}/missing", LOOPBACK)
