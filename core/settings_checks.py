"""Checks and bounds of :mod:`core.settings` that would not fit there (a module stays under 400
lines): the Qdrant URL, parsed in full, the broker URL's scheme, the encoder device, and the
upper bounds of the numeric settings."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

QDRANT_SCHEMES = ("http", "https")
# Celery transports clipdex can be pointed at; Redis is the documented one.
BROKER_SCHEMES = (
    "redis",
    "rediss",
    "redis+socket",
    "sentinel",
    "amqp",
    "amqps",
    "pyamqp",
    "memory",
)
# Upper bounds: far above any real need, and far below what a timedelta, a timer, a C integer
# or the memory of one process can hold (a huge value failed with a traceback in one of them).
GIB = 1024**3
MAX_IN_MEMORY_BYTES = 16 * GIB  # a file, upload or download is held whole in memory
MAX_SECONDS = 30 * 86_400  # 30 days: any duration (timedelta, Celery timers, sleeps)
# What the encoder runs on (core.placement); torch's device index is 8 bits: cuda:0..127.
# torch knows more device types (meta, xla, ...) that the encoder cannot run on.
_DEVICE = re.compile(r"auto|(cpu|mps)(:0)?|cuda(:(0|[1-9][0-9]?|1[01][0-9]|12[0-7]))?")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_BRACKETED = re.compile(r"\[([^\[\]]*)\](:[0-9]*)?")  # [IPv6 address][:port]


def checked_device(device: str) -> str:
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"expected auto, cpu, cuda, cuda:N (N < 128) or mps, not {device!r}")
    return device


def qdrant_endpoint(url: str) -> str:
    """The URL qdrant-client gets: ``host[:port]`` without a scheme is http (the client itself
    would read ``qdrant:6333`` as the scheme ``qdrant:`` and fail)."""
    return url if "://" in url else f"http://{url.removeprefix('//')}"


def checked_qdrant_url(url: str) -> str:
    """``url`` if qdrant-client can use it: http(s), a host name or IP address, a port in
    1..65535 (its URL parser failed with a traceback on a bad host or port)."""
    if "://" in url:
        scheme = url.split("://", 1)[0].strip().lower()
        if scheme not in QDRANT_SCHEMES:
            raise ValueError(
                f"a Qdrant server is reached over http:// or https://, not {scheme}://"
            )
    try:
        if any(c.isspace() or not c.isprintable() for c in url):
            raise ValueError("it holds a space or a control character")
        parts = urlsplit(qdrant_endpoint(url))  # ValueError: a bracket left open
        port, host = parts.port, parts.hostname  # .port: ValueError unless 0..65535
        if not host:
            raise ValueError("it names no host")
        host_port = parts.netloc.rpartition("@")[2]
        if "[" in host_port or "]" in host_port:
            bracketed = _BRACKETED.fullmatch(host_port)
            if not bracketed:
                raise ValueError(f"{host_port!r} is not [IPv6 address]:port")
            ipaddress.IPv6Address(bracketed[1])
        elif not _HOST_NAME.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name or address")
        if port == 0:
            raise ValueError("port 0 cannot be connected to")
    except ValueError as error:
        raise ValueError(
            f"expected http(s)://host[:port] such as http://localhost:6333: {error}"
        ) from None
    return url


def checked_broker_url(url: str) -> str:
    """A broker URL Celery knows (``redis://host:port/db``), refused here instead of at the
    first send."""
    scheme = url.split("://", 1)[0].strip().lower() if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        raise ValueError(
            "expected a broker URL such as redis://127.0.0.1:6379/0 "
            f"(schemes: {', '.join(s + '://' for s in BROKER_SCHEMES)})"
        )
    return url
