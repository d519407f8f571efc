"""Decode fuzzing for a fixed time: every input decodes or is rejected, nothing else.

    .venv/bin/python -m bench.decode_fuzz [--seconds 120] [--seed 0] [--workers N]

Seeds are the hostile and odd files of ../shared/corpus/pillow-images (Pillow's own test
images), fed once unchanged, then mutated by a seeded mutator: bit flips, interesting bytes,
integer-field smashes, truncation, chunk duplication and deletion, and header splices (the head
of one seed on the body of another). Each input goes through ``identify``, ``decode_bytes`` and
``to_model_input`` in a worker process with a per-input time budget (CPU seconds, measured in
the worker; the parent kills and replaces a worker still busy at 4x the budget in wall time)
and an address-space budget (RLIMIT_AS, set in the worker).

Outcomes: decoded; rejected (``ImageRejected``, by kind); crash (any other exception, a broken
output contract, or a worker that died); over-time; over-memory (a MemoryError under the
budget, whether escaping or turned into a rejection). Each crash and over-budget input is saved
as a reproducer under a temporary folder. Exit status 1 when any crash or over-budget occurred.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import connection, get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from core.images import DecodeLimits, ImageRejected, configure_pillow, decode_bytes, identify
from core.preprocess import PreprocessConfig, to_model_input

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pillow-images"
NOT_SEEDS = {"MANIFEST.tsv", "LICENSE.Pillow", "README.txt"}
CONFIG = PreprocessConfig(size=(224, 224), mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28))
MEMORY_REASON = "needs too much memory"  # core.images' reason for a MemoryError in decoding
# The budget is CPU time, which a loaded machine does not inflate; a worker still running at
# WALL_GUARD times the budget (wall clock) is hung or starved, and is killed and replaced.
WALL_GUARD = 4.0
RECYCLE_AFTER = 2000  # inputs per worker before it is replaced (bounds leaks and fragmentation)

Result = tuple[str, str, str]  # (outcome, detail, message)


# -- the worker ---------------------------------------------------------------------------------


def _check(data: bytes, limits: DecodeLimits) -> Result:
    """One input through the three entry points; never raises except for the harness."""
    try:
        fmt: str | None = identify(data, limits)
    except ImageRejected:
        fmt = None
    except MemoryError:
        return ("over_memory", "identify", "MemoryError escaped identify")
    try:
        decoded = decode_bytes(data, limits)
    except ImageRejected as rejected:
        if MEMORY_REASON in rejected.reason:
            return ("over_memory", "decode", rejected.reason)
        return ("rejected", str(rejected.kind), rejected.reason)
    except MemoryError:
        return ("over_memory", "decode", "MemoryError escaped decode_bytes")
    try:
        pixels = to_model_input(decoded.image, CONFIG)
    except ImageRejected as rejected:  # too thin to resize in bounded memory: a rejection
        return ("rejected", str(rejected.kind), rejected.reason)
    except MemoryError:
        return ("over_memory", "preprocess", "MemoryError in to_model_input")
    image = decoded.image
    problems = []
    if fmt is None:
        problems.append("identify rejected what decode_bytes accepted")
    elif fmt != decoded.format:
        problems.append(f"identify said {fmt}, decode_bytes said {decoded.format}")
    if image.mode != "RGB":
        problems.append(f"decoded mode {image.mode}, not RGB")
    if decoded.width <= 0 or decoded.height <= 0 or min(image.size) <= 0:
        problems.append(f"empty picture {decoded.width}x{decoded.height} / {image.size}")
    if pixels.shape != (224, 224, 3) or str(pixels.dtype) != "uint8":
        problems.append(f"model input {pixels.shape} {pixels.dtype}")
    if problems:
        return ("crash", "ContractError", "; ".join(problems))
    return ("decoded", decoded.format, "")


def _worker(conn: Connection, limits: DecodeLimits, memory_bytes: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet = os.open(os.devnull, os.O_WRONLY)  # libtiff and friends write warnings to fd 2
    os.dup2(quiet, 2)
    os.close(quiet)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    configure_pillow(limits.max_image_pixels)
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        started = time.process_time()
        try:
            result = _check(data, limits)
        except Exception as error:  # anything but ImageRejected is a crash
            frames = traceback.extract_tb(error.__traceback__)
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
            result = ("crash", f"{type(error).__name__} at {where}", str(error)[:300])
        conn.send((result, time.process_time() - started))


@dataclass
class Slot:
    process: BaseProcess
    conn: Connection
    served: int = 0
    data: bytes | None = None
    origin: str = ""
    started: float = 0.0


def _start(limits: DecodeLimits, memory_bytes: int) -> Slot:
    parent, child = get_context("fork").Pipe()
    process = get_context("fork").Process(
        target=_worker, args=(child, limits, memory_bytes), daemon=True
    )
    process.start()
    child.close()
    return Slot(process, parent)


def _stop(slot: Slot) -> None:
    if slot.process.is_alive():
        slot.process.kill()
    slot.process.join(5)
    slot.conn.close()


# -- the mutator --------------------------------------------------------------------------------


def _flip_bits(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _interesting_bytes(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF))
    return bytes(out)


def _smash_integer(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """Overwrite a 2- or 4-byte field, biased to the header where sizes and offsets live."""
    width = rng.choice((2, 4))
    if len(data) <= width:
        return data
    limit = min(len(data) - width, rng.choice((64, 512, len(data) - width)))
    at = rng.randrange(limit + 1)
    value = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF))
    value = rng.randrange(1 << (8 * width)) if rng.random() < 0.3 else value
    value &= (1 << (8 * width)) - 1
    packed = value.to_bytes(width, "little") if rng.random() < 0.5 else value.to_bytes(width, "big")
    return data[:at] + packed + data[at + width :]


def _truncate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    return data[: rng.randrange(len(data))]


def _duplicate_chunk(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randint(1, 4096)]
    at = rng.randrange(len(data) + 1)
    return data[:at] + chunk * rng.choice((1, 1, 2, 16)) + data[at:]


def _delete_chunk(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randint(1, 1024) :]


def _splice_header(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """The head of this input on the body of another seed (or the reverse)."""
    other = rng.choice(seeds)
    cut = rng.randint(1, min(len(data), 1024))
    if rng.random() < 0.5:
        return data[:cut] + other[cut:]
    return other[:cut] + data[cut:]


MUTATIONS: tuple[Callable[[random.Random, bytes, list[bytes]], bytes], ...] = (
    *(_flip_bits, _interesting_bytes, _smash_integer, _smash_integer, _truncate),
    *(_duplicate_chunk, _delete_chunk, _splice_header),
)


def mutate(rng: random.Random, seed: bytes, seeds: list[bytes]) -> tuple[bytes, str]:
    data, names = seed, []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not data:
            break
        mutation = rng.choice(MUTATIONS)
        data = mutation(rng, data, seeds)
        names.append(mutation.__name__.lstrip("_"))
    return data, "+".join(names)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Tally:
    tried: int = 0
    decoded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    over_time_cpu: int = 0  # finished, but used more CPU time than the budget
    over_time_killed: int = 0  # still running at the wall-clock guard: killed
    over_memory: Counter[str] = field(default_factory=Counter)
    saved: dict[str, Path] = field(default_factory=dict)  # first reproducer per signature
    messages: dict[str, str] = field(default_factory=dict)


def _save(tally: Tally, out: Path, signature: str, slot: Slot, message: str) -> None:
    if signature in tally.saved or slot.data is None:
        return
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in signature)[:80]
    path = out / f"{len(tally.saved):03d}-{safe}.bin"
    path.write_bytes(slot.data)
    path.with_suffix(".txt").write_text(f"{signature}\n{slot.origin}\n{message}\n")
    tally.saved[signature], tally.messages[signature] = path, message


def _record(tally: Tally, out: Path, slot: Slot, result: Result) -> None:
    outcome, detail, message = result
    if outcome == "decoded":
        tally.decoded += 1
        tally.formats[detail] += 1
    elif outcome == "rejected":
        tally.rejected[detail] += 1
    elif outcome == "over_memory":
        tally.over_memory[detail] += 1
        _save(tally, out, f"over-memory {detail}", slot, message)
    else:
        tally.crashes[detail] += 1
        _save(tally, out, f"crash {detail}", slot, message)


def load_seeds(corpus: Path, max_bytes: int) -> list[tuple[str, bytes]]:
    seeds = []
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and path.name not in NOT_SEEDS and path.stat().st_size <= max_bytes:
            seeds.append((str(path.relative_to(corpus)), path.read_bytes()))
    return seeds


def run(args: argparse.Namespace) -> int:
    limits = DecodeLimits(
        max_file_bytes=args.max_file_bytes,
        max_image_pixels=args.max_pixels,
        draft_min_side=448,
    )
    configure_pillow(limits.max_image_pixels)  # the parent imports the plugins before forking
    seeds = load_seeds(args.corpus, limits.max_file_bytes)
    if not seeds:
        print(f"no seed files under {args.corpus}", file=sys.stderr)
        return 2
    seed_bytes = [data for _, data in seeds if data]
    out = Path(tempfile.mkdtemp(prefix="clipdex-decode-fuzz-"))
    rng = random.Random(args.seed)
    memory = args.memory_mib * 1024 * 1024
    unchanged = iter(seeds)  # every seed goes through once unmutated, first

    def next_input() -> tuple[bytes, str]:
        seed = next(unchanged, None)
        if seed is not None:
            return seed[1], f"seed {seed[0]}"
        name, data = rng.choice(seeds)
        mutated, how = mutate(rng, data, seed_bytes)
        return mutated, f"{name} via {how}"

    tally = Tally()
    slots = [_start(limits, memory) for _ in range(args.workers)]
    deadline = time.monotonic() + args.seconds
    try:
        while True:
            now = time.monotonic()
            for i, slot in enumerate(slots):
                if slot.data is None and now < deadline:
                    if slot.served >= RECYCLE_AFTER:
                        _stop(slot)
                        slot = slots[i] = _start(limits, memory)
                    slot.data, slot.origin = next_input()
                    slot.started, slot.served = time.monotonic(), slot.served + 1
                    tally.tried += 1
                    slot.conn.send_bytes(slot.data)
            busy = [slot for slot in slots if slot.data is not None]
            if not busy:
                break
            ready = connection.wait([slot.conn for slot in busy], timeout=0.05)
            for i, slot in enumerate(slots):
                if slot.data is not None and _collect(tally, out, slot, ready, args.timeout):
                    _stop(slot)
                    slots[i] = _start(limits, memory)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        for slot in slots:
            _stop(slot)
    _report(tally, args, len(seeds), out)
    over_time = tally.over_time_cpu + tally.over_time_killed
    failed = sum(tally.crashes.values()) + over_time + sum(tally.over_memory.values())
    return 1 if failed else 0


def _collect(tally: Tally, out: Path, slot: Slot, ready: list[object], timeout: float) -> bool:
    """Take a busy worker's answer if it has one; True when the worker must be replaced."""
    if slot.conn in ready:
        try:
            result, cpu = slot.conn.recv()
        except EOFError:
            slot.process.join(5)
            code = slot.process.exitcode
            signum = -code if code is not None and code < 0 else None
            died = f"worker died (exit {code}, signal {signum})"
            _record(tally, out, slot, ("crash", died, slot.origin))
            return True
        if cpu > timeout:
            tally.over_time_cpu += 1
            _save_over_time(tally, out, slot, f"{cpu:.2f} s CPU; {result[0]} {result[1]}")
        _record(tally, out, slot, result)
        slot.data = None
        return False
    if time.monotonic() - slot.started > timeout * WALL_GUARD:
        tally.over_time_killed += 1
        _save_over_time(tally, out, slot, f"killed after {timeout * WALL_GUARD:g} s wall")
        return True
    return False


def _save_over_time(tally: Tally, out: Path, slot: Slot, message: str) -> None:
    """One reproducer per seed file: a slow seed makes many slow mutants."""
    seed = slot.origin.removeprefix("seed ").split(" via ")[0]
    _save(tally, out, f"over-time from {seed}", slot, f"{slot.origin}: {message}")


def _report(tally: Tally, args: argparse.Namespace, seeds: int, out: Path) -> None:
    budget = f"{args.timeout:g} s and {args.memory_mib} MiB per input, {args.workers} workers"
    print(f"decode fuzz: {args.seconds:g} s, seed {args.seed}, {seeds} seed files, {budget}")
    print(f"inputs tried  {tally.tried}")
    print(f"decoded       {tally.decoded}  ({_counts(tally.formats)})")
    print(f"rejected      {sum(tally.rejected.values())}  ({_counts(tally.rejected)})")
    print(f"crashes       {sum(tally.crashes.values())}  ({_counts(tally.crashes)})")
    over_time = tally.over_time_cpu + tally.over_time_killed
    print(
        f"over-time     {over_time}  (over {args.timeout:g} s CPU: {tally.over_time_cpu}, "
        f"killed at {args.timeout * WALL_GUARD:g} s wall: {tally.over_time_killed})"
    )
    print(f"over-memory   {sum(tally.over_memory.values())}  ({_counts(tally.over_memory)})")
    for signature, path in tally.saved.items():
        print(f"  {signature}: {path}\n    {tally.messages[signature][:200]}")
    if not tally.saved:
        out.rmdir()


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in counter.most_common()) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=2.0, help="CPU seconds per input")
    parser.add_argument("--memory-mib", type=int, default=2048, help="RLIMIT_AS per worker")
    parser.add_argument("--max-file-bytes", type=int, default=100 * 1024 * 1024)
    parser.add_argument("--max-pixels", type=int, default=89_478_485)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
