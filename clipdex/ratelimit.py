"""In-memory token buckets: how many requests one API key or one client address may make.

Each name (a key, an address) has a bucket holding at most ``per_minute`` tokens that refills at
``per_minute / 60`` tokens a second; a request takes one token, and an empty bucket says how long
until the next one. Buckets live in this process only (each API worker process counts on its
own), are thread-safe, and are bounded in number: full buckets carry no state and are dropped
first, then the least recently used.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBuckets:
    def __init__(
        self,
        per_minute: int,
        max_names: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 0 or max_names < 1:
            raise ValueError("per_minute must be >= 0 and max_names >= 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens a second
        self.max_names = max_names
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    @property
    def enabled(self) -> bool:
        """0 per minute means no limit."""
        return self.capacity > 0

    def _level(self, name: str, now: float) -> float:
        entry = self._buckets.get(name)
        if entry is None:
            return self.capacity
        tokens, at = entry
        return min(self.capacity, tokens + max(0.0, now - at) * self.rate)

    def _wait(self, level: float) -> float:
        return (1.0 - level) / self.rate

    def wait(self, name: str) -> float | None:
        """Seconds until ``name`` has a token, or None when it has one now; takes nothing."""
        if not self.enabled:
            return None
        with self._lock:
            level = self._level(name, self._clock())
        return None if level >= 1.0 else self._wait(level)

    def take(self, name: str) -> float | None:
        """Take a token: None when one was taken, else the seconds until one is available."""
        if not self.enabled:
            return None
        with self._lock:
            now = self._clock()
            level = self._level(name, now)
            if level < 1.0:
                return self._wait(level)
            self._buckets[name] = (level - 1.0, now)
            self._buckets.move_to_end(name)
            if len(self._buckets) > self.max_names:
                self._shrink(now)
            return None

    def _shrink(self, now: float) -> None:
        for name in [n for n in self._buckets if self._level(n, now) >= self.capacity]:
            del self._buckets[name]
        while len(self._buckets) > self.max_names:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
