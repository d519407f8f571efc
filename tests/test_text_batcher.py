"""Concurrent text queries are encoded together, with the vectors each would get alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from core.encoder import ModelSpec, OpenClipEncoder
from search.text_batcher import TextBatcher
from search.text_cache import TextVectorCache
from tests.fakes import FakeEncoder

Vectors = NDArray[np.float32]
WORDS = ["cat", "dog", "car", "boat", "tree", "house", "bird", "lamp"]
QUERIES = [f"query number {i}: a {word} at dusk" for i, word in enumerate(WORDS)]


class CountingEncoder:
    """Wraps an encode function; records each call's texts and can be slowed down or broken."""

    def __init__(self, encode: Callable[[Sequence[str]], Vectors], delay: float = 0.05) -> None:
        self._encode = encode
        self._delay = delay
        self.calls: list[list[str]] = []
        self.fail_on: str | None = None

    def __call__(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        time.sleep(self._delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("the model broke")
        return self._encode(texts)


def concurrently(call: Callable[[list[str]], Vectors], batches: list[list[str]]) -> list[Vectors]:
    results: list[Vectors | BaseException | None] = [None] * len(batches)
    start = threading.Barrier(len(batches))

    def worker(index: int) -> None:
        start.wait()
        try:
            results[index] = call(batches[index])
        except BaseException as error:  # collected and re-checked by the test
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a caller hung"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if isinstance(result, np.ndarray)]


@pytest.mark.tiny_real
def test_concurrent_queries_share_forwards_and_get_their_sequential_vectors() -> None:
    model = OpenClipEncoder(ModelSpec("clipdex-tiny", "random", device="cpu"))
    sequential = [model.encode_texts([query]) for query in QUERIES]
    counting = CountingEncoder(model.encode_texts)
    batcher = TextBatcher(counting)
    together = concurrently(batcher.encode, [[query] for query in QUERIES])
    assert len(counting.calls) < len(QUERIES)
    assert sorted(t for call in counting.calls for t in call) == sorted(QUERIES)  # each once
    for alone, batched in zip(sequential, together, strict=True):
        assert batched.shape == alone.shape == (1, 32)
        assert np.max(np.abs(batched - alone)) <= 1e-6


def test_each_caller_gets_its_own_rows_in_its_own_order() -> None:
    fake = FakeEncoder()
    batcher = TextBatcher(CountingEncoder(fake.encode_texts), max_wait=0.01)
    batches = [["b", "a"], ["a"], ["c", "c", "b"], ["d"]]
    results = concurrently(batcher.encode, batches)
    for texts, vectors in zip(batches, results, strict=True):
        assert np.array_equal(vectors, fake.encode_texts(texts))


def test_a_failed_forward_fails_its_callers_only_and_the_next_forward_works() -> None:
    fake = FakeEncoder()
    counting = CountingEncoder(fake.encode_texts)
    counting.fail_on = "poison"
    batcher = TextBatcher(counting, max_wait=0.0)
    with pytest.raises(RuntimeError, match="the model broke"):
        concurrently(batcher.encode, [["poison"], ["fine"]])
    counting.fail_on = None
    assert np.array_equal(batcher.encode(["fine"]), fake.encode_texts(["fine"]))


def test_a_large_crowd_is_split_into_bounded_forwards() -> None:
    fake = FakeEncoder()
    counting = CountingEncoder(fake.encode_texts, delay=0.01)
    batcher = TextBatcher(counting, max_wait=0.05, max_texts=4)
    batches = [[f"t{i}"] for i in range(12)]
    results = concurrently(batcher.encode, batches)
    assert all(len(call) <= 4 for call in counting.calls)
    assert 3 <= len(counting.calls) < 12
    for texts, vectors in zip(batches, results, strict=True):
        assert np.array_equal(vectors, fake.encode_texts(texts))


def test_the_cache_batches_concurrent_misses_and_encodes_a_shared_text_once() -> None:
    fake = FakeEncoder()
    slow = CountingEncoder(fake.encode_texts)
    fake_slow = FakeEncoder()
    fake_slow.encode_texts = slow  # type: ignore[method-assign]
    cache = TextVectorCache(fake_slow, size=100)
    results = concurrently(cache.encode, [["same", f"own {i}"] for i in range(6)])
    assert cache.forwards < 6
    assert sum(call.count("same") for call in slow.calls) == 1
    for i, vectors in enumerate(results):
        assert np.array_equal(vectors, fake.encode_texts(["same", f"own {i}"]))


def test_one_huge_request_is_encoded_in_bounded_forwards() -> None:
    """A classify with many labels x templates must not become one giant forward."""
    fake = FakeEncoder()
    counting = CountingEncoder(fake.encode_texts, delay=0.0)
    batcher = TextBatcher(counting, max_wait=0.0, max_texts=16)
    texts = [f"a photo of a thing number {i}." for i in range(100)]
    vectors = batcher.encode(texts)
    assert max(len(call) for call in counting.calls) <= 16 and len(counting.calls) == 7
    np.testing.assert_allclose(vectors, fake.encode_texts(texts), atol=1e-6)


def _staggered(call: Callable[[list[str]], Vectors], texts: list[str], gap: float) -> float:
    """One caller per text, each ``gap`` seconds after the last; seconds until all answered."""
    started = time.monotonic()
    threads = []
    for i, text in enumerate(texts):
        threads.append(threading.Thread(target=call, args=([text],)))
        threads[-1].start()
        if i < len(texts) - 1:
            time.sleep(gap)
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a caller hung"
    return time.monotonic() - started


def _served_three_at_once(batcher: TextBatcher, counting: CountingEncoder) -> None:
    """Leaves ``batcher`` after a forward that served three callers."""
    release = threading.Event()
    slow_first = counting._encode

    def first_waits(texts: Sequence[str]) -> Vectors:
        if texts == ["first"]:
            release.wait(10)
        return slow_first(texts)

    counting._encode = first_waits
    calls = len(counting.calls)
    leader = threading.Thread(target=batcher.encode, args=(["first"],))
    leader.start()
    while len(counting.calls) == calls:  # the leader's forward has begun
        time.sleep(0.001)
    others = [threading.Thread(target=batcher.encode, args=([t],)) for t in ("x", "y", "z")]
    for thread in others:
        thread.start()
    while len(batcher._pending) < 3:  # all three queued behind it
        time.sleep(0.001)
    release.set()
    for thread in [leader, *others]:
        thread.join(10)
    counting._encode = slow_first
    assert counting.calls[-1] == ["x", "y", "z"]


def test_callers_coming_back_one_by_one_after_a_shared_forward_share_the_next() -> None:
    """Three clients answered by one forward send their next queries 50 ms apart (each
    answer is written out in turn): the next forward waits for all three instead of running
    a lone query while the others are still on their way."""
    fake = FakeEncoder()
    counting = CountingEncoder(fake.encode_texts, delay=0.02)
    batcher = TextBatcher(counting, max_hold=5.0)
    _served_three_at_once(batcher, counting)
    before = len(counting.calls)
    seconds = _staggered(batcher.encode, ["again 1", "again 2", "again 3"], gap=0.05)
    assert counting.calls[before:] == [["again 1", "again 2", "again 3"]]
    assert seconds < 2.5  # it went when the third arrived, not at the 5 s hold


def test_a_lone_query_is_not_held_and_a_hold_ends() -> None:
    fake = FakeEncoder()
    counting = CountingEncoder(fake.encode_texts, delay=0.0)
    batcher = TextBatcher(counting, max_hold=5.0)
    batcher.encode(["one"])
    started = time.monotonic()
    batcher.encode(["two"])  # after a forward that served one caller: only max_wait
    assert time.monotonic() - started < 1.0
    held = TextBatcher(counting, max_hold=0.3)
    _served_three_at_once(held, counting)
    started = time.monotonic()
    assert np.array_equal(held.encode(["alone"]), fake.encode_texts(["alone"]))
    assert 0.1 <= time.monotonic() - started < 2.0  # held for the others, until the hold ended
    _served_three_at_once(held, counting)
    time.sleep(0.4)  # the hold counts from the end of that forward: it is over now
    started = time.monotonic()
    held.encode(["later"])
    assert time.monotonic() - started < 0.25


def test_requests_left_over_by_a_full_forward_are_not_held() -> None:
    """Five callers queued behind a forward; the next forward takes four (``max_texts``). The
    fifth has already waited a forward: it goes next, not after the hold for callers to
    come back."""
    fake = FakeEncoder()
    counting = CountingEncoder(fake.encode_texts, delay=0.0)
    batcher = TextBatcher(counting, max_texts=4, max_hold=5.0)
    release = threading.Event()

    def first_waits(texts: Sequence[str]) -> Vectors:
        if texts == ["first"]:
            release.wait(10)
        return fake.encode_texts(texts)

    counting._encode = first_waits
    leader = threading.Thread(target=batcher.encode, args=(["first"],))
    leader.start()
    while not counting.calls:
        time.sleep(0.001)
    started = time.monotonic()
    queued = [threading.Thread(target=batcher.encode, args=([f"q{i}"],)) for i in range(5)]
    for thread in queued:
        thread.start()
        while not any(r.texts == [f"q{queued.index(thread)}"] for r in batcher._pending):
            time.sleep(0.001)  # in this order
    release.set()
    for thread in [leader, *queued]:
        thread.join(10)
    assert counting.calls[1:] == [["q0", "q1", "q2", "q3"], ["q4"]]
    assert time.monotonic() - started < 2.5  # q4 did not wait for the 5 s hold
