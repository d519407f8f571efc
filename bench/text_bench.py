"""Text query latency: the text tower over 77 positions vs the real length (c=1), and 8
concurrent clients with and without micro-batching, side by side in one run.

    .venv/bin/python -m bench.text_bench [--queries 30] [--clients 8] [--rounds 4]

Weights are random (no download): the cost of a forward does not depend on them. Every query is
new (no cache). Prints p50/p90 in ms and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.encoder import register_builtin_configs
from core.text_tower import TextTower
from core.torch_compat import import_open_clip
from search.text_batcher import TextBatcher

Encode = Callable[[Sequence[str]], NDArray[np.float32]]
_WORDS = ["red", "dog", "car", "beach", "snow", "city", "night", "old", "woman", "bicycle"]


def queries(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        "a photo of " + " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 9))))
        for _ in range(count)
    ]


def encoder(model: Any, tokenizer: Any, trim: bool) -> Encode:
    import torch

    tower = TextTower(model)

    def encode(texts: Sequence[str]) -> NDArray[np.float32]:
        with torch.inference_mode():
            features = tower.encode(tokenizer(list(texts)), trim=trim)
        array: NDArray[np.float32] = torch.nn.functional.normalize(features, dim=-1).numpy()
        return array

    return encode


def serial(encode: Encode, texts: list[str]) -> list[float]:
    times = []
    for text in texts:
        start = time.perf_counter()
        encode([text])
        times.append(time.perf_counter() - start)
    return times


def concurrent(encode: Encode, texts: list[str], clients: int) -> list[float]:
    """Each client sends its share of the queries one after another; all start together."""
    times: list[float] = []
    lock = threading.Lock()
    start_line = threading.Barrier(clients)

    def client(mine: list[str]) -> None:
        start_line.wait()
        for text in mine:
            start = time.perf_counter()
            encode([text])
            with lock:
                times.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(texts[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def line(label: str, times: list[float]) -> float:
    p50 = statistics.median(times) * 1000
    p90 = float(np.percentile(times, 90)) * 1000
    print(f"  {label:<44} p50 {p50:7.1f} ms   p90 {p90:7.1f} ms   (n={len(times)})")
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    open_clip = import_open_clip()
    register_builtin_configs(open_clip)
    model = open_clip.create_model(args.model, pretrained=None).eval()
    tokenizer = open_clip.get_tokenizer(args.model)
    full, trimmed = encoder(model, tokenizer, False), encoder(model, tokenizer, True)
    full(["warm up"]), trimmed(["warm up"])
    print(f"{args.model}, random weights, {args.queries} new queries per row")
    print("c=1 (one query at a time), interleaved:")
    full_times: list[float] = []
    trim_times: list[float] = []
    for index, text in enumerate(queries(args.queries, seed=1)):  # alternate which runs first
        pair = [(full, full_times), (trimmed, trim_times)]
        for encode, times in pair if index % 2 else reversed(pair):
            times.extend(serial(encode, [text]))
    p50_full = line("77 positions (open_clip encode_text)", full_times)
    p50_trim = line("real token length", trim_times)
    print(f"  ratio full/trimmed p50: {p50_full / p50_trim:.2f}x")
    batcher = TextBatcher(trimmed)
    paths: dict[str, Encode] = {
        "baseline: 77 positions, own forward": full,
        "real length, own forward": trimmed,
        "real length, micro-batched": batcher.encode,
    }
    crowd: dict[str, list[float]] = {label: [] for label in paths}
    print(f"c={args.clients} (concurrent clients), {args.rounds} interleaved rounds:")
    for round_ in range(args.rounds):
        labels = list(paths)[round_ % 3 :] + list(paths)[: round_ % 3]
        for label in labels:
            texts = queries(args.clients * 2, seed=100 * round_ + labels.index(label))
            crowd[label].extend(concurrent(paths[label], texts, args.clients))
    p50 = {label: line(label, times) for label, times in crowd.items()}
    asked = args.rounds * args.clients * 2
    print(f"  micro-batched forwards: {batcher.forwards} for {asked} queries")
    base, own, batched = p50.values()
    print(f"  ratio own-forward/micro-batched p50: {own / batched:.2f}x")
    print(f"  ratio baseline/new p50 at c={args.clients}: {base / batched:.2f}x")


if __name__ == "__main__":
    main()
