"""Download one http(s) URL for a manifest row, guarded against server-side request forgery.

Every hop (the URL, then each redirect, followed by hand) is checked the same way: http or
https only; the host name is resolved here and every address it resolves to must be public
(not private, loopback, link-local, multicast, reserved, unspecified, shared or IPv4-mapped to
one of those) unless ``allow_private`` or one of ``allow_networks`` admits it. The connection
then goes to the address that was checked (the URL is rewritten to it, with the Host header
and TLS server name of the original host), so a DNS answer that changes between the check and
the connect (rebinding) reaches nothing new. The body is read up to ``max_bytes`` and within
``timeout_seconds`` for the whole download, redirects included.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_LATE = "the download did not finish within its deadline"


class FetchRefused(ValueError):
    """The URL was refused or could not be downloaded; the message says why (one line)."""


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    max_bytes: int
    timeout_seconds: float
    allow_private: bool = False
    allow_networks: tuple[Network, ...] = field(default_factory=tuple)

    @classmethod
    def of(
        cls, max_bytes: int, timeout_seconds: float, allow_private: bool, networks: Sequence[str]
    ) -> FetchPolicy:
        parsed = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        return cls(max_bytes, timeout_seconds, allow_private, parsed)

    def admits(self, address: IPAddress) -> bool:
        if self.allow_private or any(address in network for network in self.allow_networks):
            return True
        return is_public(address)


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address (IPv4-mapped IPv6 judged by its IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour  # 2002:a9fe:a9fe:: is 169.254...
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """The body of ``url`` after at most MAX_REDIRECTS checked redirects."""
    deadline = time.monotonic() + policy.timeout_seconds
    with httpx.Client(trust_env=False, follow_redirects=False, verify=True) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = _checked(url, policy)
            with _open(client, target, deadline) as response:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise FetchRefused(f"the server answered HTTP {response.status_code}")
                return _body(response, policy.max_bytes, deadline)
    raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpx.URL  # with the checked address as its host
    host_header: str
    server_name: str | None  # TLS: the original host name


def _checked(url: str, policy: FetchPolicy) -> _Target:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise FetchRefused(f"not a valid URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchRefused("only http and https URLs with a host can be downloaded")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _resolve(parsed.host, port)
    refused = [a for a in addresses if not policy.admits(a)]
    if refused:
        raise FetchRefused(
            f"{parsed.host} resolves to {refused[0]}, a private or reserved address "
            "(allow it with CLIPDEX_URL_ALLOW_PRIVATE or CLIPDEX_URL_ALLOW_NETWORKS)"
        )
    host_header = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    if ":" in parsed.host:  # an IPv6 literal keeps its brackets in the Host header
        host_header = f"[{parsed.host}]" + ("" if parsed.port is None else f":{parsed.port}")
    server_name = parsed.host if parsed.scheme == "https" else None
    return _Target(parsed.copy_with(host=str(addresses[0])), host_header, server_name)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise FetchRefused(f"cannot resolve {host}: {error}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchRefused(f"cannot resolve {host}")
    return addresses


@contextmanager
def _open(client: httpx.Client, target: _Target, deadline: float) -> Iterator[httpx.Response]:
    """The response to a GET of ``target``, its transport errors as :class:`FetchRefused`."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchRefused(_LATE)
    request = client.build_request(
        "GET", target.url, timeout=httpx.Timeout(left),
        headers={"Host": target.host_header, "Accept-Encoding": "identity"},
        extensions={"sni_hostname": target.server_name} if target.server_name else None,
    )  # fmt: skip
    try:
        response = client.send(request, stream=True)
    except httpx.TimeoutException:
        raise FetchRefused(_LATE) from None
    except httpx.HTTPError as error:
        raise FetchRefused(f"download failed: {error}") from None
    try:
        yield response
    finally:
        response.close()


def _body(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"the download is {int(declared)} bytes, above the {max_bytes} byte cap")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise FetchRefused(f"the download is above the {max_bytes} byte cap")
            if time.monotonic() > deadline:
                raise FetchRefused(_LATE)
            chunks.append(chunk)
    except httpx.TimeoutException:
        raise FetchRefused(_LATE) from None
    except httpx.HTTPError as error:
        raise FetchRefused(f"download failed: {error}") from None
    return b"".join(chunks)
