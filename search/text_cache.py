"""A thread-safe LRU of text vectors, so repeated queries and prompts skip the model.

Misses go through a :class:`search.text_batcher.TextBatcher`: concurrent requests' new texts
are encoded in one forward."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from core.encoder import Encoder
from search.text_batcher import DEFAULT_MAX_WAIT, TextBatcher


class TextVectorCache:
    def __init__(self, encoder: Encoder, size: int, batch_wait: float = DEFAULT_MAX_WAIT) -> None:
        self._encoder = encoder
        self._batcher = TextBatcher(self._encode_and_keep, max_wait=batch_wait, known=self._peek)
        self._size = size
        self._vectors: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        found: dict[str, NDArray[np.float32]] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            found.update(zip(missing, self._batcher.encode(missing), strict=True))
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        return np.stack([found[text] for text in texts])

    def _encode_and_keep(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One forward; its vectors are cached before the next forward can start."""
        vectors = self._encoder.encode_texts(texts)
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._vectors[text] = vector
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)
        return vectors

    def _peek(self, text: str) -> NDArray[np.float32] | None:
        with self._lock:
            return self._vectors.get(text)

    @property
    def forwards(self) -> int:
        """Encoder calls made for misses (concurrent misses share one)."""
        return self._batcher.forwards
