"""Concurrent text queries share one forward of the text tower.

A caller that finds the encoder idle leads: it waits for company, takes every waiting request,
runs one ``encode`` over their distinct texts and hands each caller its rows. Callers that
arrive while a forward runs queue up and go together in the next one.

How long a leader waits: ``max_wait`` (2 ms) after a forward that served one caller, so a lone
query is not held. After a forward that served several, their callers tend to come back (an
application or a person asks again when answered). Then the leader waits until as many
requests wait as that forward served, plus those queued besides itself (the leader may be
one of either, so this can be one short), but never past ``max_hold`` after that forward
ended, nor once ``max_texts`` texts wait. A query arriving later is not held at all, nor are
requests left over when the last forward was full (they have waited one forward already),
and callers that never come back (their text was cached) cost at most the rest of the hold.
Without this, 8 clients on 2 cores settled into forwards of 1 and 7 texts, the lone one
slowed by the other seven's responses being written: text p50 at c=8 138-142 ms through
``clipdex serve`` at 100k points, against 102-112 ms with it (``bench/http_bench.py``).

``known`` (a cache's look-up) is asked again just before each forward, so a text that an
earlier forward encoded while a caller queued is not encoded twice. An error in a
forward reaches every caller whose texts were in it, and only them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]
DEFAULT_MAX_WAIT = 0.002  # seconds a leader waits for company: small beside a 30 ms forward
DEFAULT_MAX_HOLD = 0.06  # at most this while the last forward's callers come back
DEFAULT_MAX_TEXTS = 64


class _Request:
    __slots__ = ("arrived", "done", "error", "texts", "vectors")

    def __init__(self, texts: list[str]) -> None:
        self.arrived = time.monotonic()
        self.texts = texts
        self.vectors: Vectors | None = None
        self.error: BaseException | None = None
        self.done = False


class TextBatcher:
    def __init__(
        self,
        encode: Callable[[Sequence[str]], Vectors],
        max_wait: float = DEFAULT_MAX_WAIT,
        max_texts: int = DEFAULT_MAX_TEXTS,
        known: Callable[[str], NDArray[np.float32] | None] | None = None,
        max_hold: float = DEFAULT_MAX_HOLD,
    ) -> None:
        self._encode = encode
        self._known = known or _nothing_known
        self._max_wait = max_wait
        self._max_hold = max_hold
        self._max_texts = max_texts
        self._pending: list[_Request] = []
        self._busy = False
        self._last_served = 0  # callers in the last forward
        self._done_at = 0.0  # when it ended (monotonic)
        self._taken_at = 0.0  # when its requests were taken from the queue
        self._ready = threading.Condition()
        self.forwards = 0  # encoder calls made, for metrics and tests

    def encode(self, texts: Sequence[str]) -> Vectors:
        request = _Request(list(texts))
        with self._ready:
            self._pending.append(request)
            self._ready.notify_all()  # a leader waiting for company may now have enough
        while True:
            with self._ready:
                while self._busy and not request.done:
                    self._ready.wait()
                if request.done:
                    break
                self._busy = True
            self._lead()
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors

    def _lead(self) -> None:
        batch: list[_Request] = []
        try:
            batch = self._gather()
            self._run(batch)
        finally:
            with self._ready:
                for request in batch:
                    request.done = True
                self._busy = False
                self._done_at = time.monotonic()
                self._ready.notify_all()

    def _gather(self) -> list[_Request]:
        """The waiting requests, oldest first, up to ``max_texts`` texts (at least one)."""
        started = time.monotonic()
        with self._ready:
            expected = self._last_served + len(self._pending) - 1
            hold_until = self._done_at + self._max_hold
            left_over = bool(self._pending) and self._pending[0].arrived < self._taken_at
            holding = expected > 1 and started < hold_until and not left_over
            deadline = hold_until if holding else started + self._max_wait
            while self._waiting_texts() < self._max_texts:
                if holding and len(self._pending) >= expected:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            taken, count = 0, 0
            for request in self._pending:
                if taken and count + len(request.texts) > self._max_texts:
                    break
                taken += 1
                count += len(request.texts)
            batch, self._pending = self._pending[:taken], self._pending[taken:]
            self._last_served, self._taken_at = taken, time.monotonic()
        return batch

    def _waiting_texts(self) -> int:
        return sum(len(request.texts) for request in self._pending)

    def _run(self, batch: list[_Request]) -> None:
        unique = list(dict.fromkeys(text for request in batch for text in request.texts))
        rows = {text: vector for text in unique if (vector := self._known(text)) is not None}
        todo = [text for text in unique if text not in rows]
        if todo:
            self.forwards += 1
            try:  # in forwards of at most max_texts: a 32,000-prompt classify stays bounded
                for start in range(0, len(todo), self._max_texts):
                    chunk = todo[start : start + self._max_texts]
                    rows.update(zip(chunk, self._encode(chunk), strict=True))
            except BaseException as error:  # every caller in this forward hears of it
                for request in batch:
                    request.error = error
                return
        for request in batch:
            found = [rows[text] for text in request.texts]
            request.vectors = np.stack(found) if found else np.zeros((0, 0), np.float32)


def _nothing_known(text: str) -> None:
    return None
