"""``clipdex worker --gpus``: which GPU each pool child gets, on a fake device list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.devices import GpuSpecError, device_for_child, parse_gpus
from tests.conftest import cli_env

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("spec", "available", "expected"),
    [("all", 4, [0, 1, 2, 3]), ("ALL", 1, [0]), ("0,1", 2, [0, 1]), (" 3, 1 ", 4, [3, 1])],
)
def test_gpu_lists(spec: str, available: int, expected: list[int]) -> None:
    assert parse_gpus(spec, available) == expected


@pytest.mark.parametrize(
    ("spec", "available", "message"),
    [
        ("all", 0, "no CUDA GPU"),
        ("0", 0, "no CUDA GPU"),
        ("2", 2, "no GPU 2 here"),
        ("-1", 2, "no GPU -1"),
        ("0,0", 2, "named twice"),
        ("first", 2, "'all' or GPU ids"),
        ("", 2, "'all' or GPU ids"),
    ],
)
def test_bad_gpu_lists_are_one_clear_line(spec: str, available: int, message: str) -> None:
    with pytest.raises(GpuSpecError, match=message) as raised:
        parse_gpus(spec, available)
    assert "\n" not in str(raised.value)


def test_each_child_is_pinned_to_one_gpu_and_the_gpus_are_shared_out_in_turn() -> None:
    gpus = parse_gpus("1,3", 4)
    assert [device_for_child(child, gpus) for child in range(4)] == [
        "cuda:1", "cuda:3", "cuda:1", "cuda:3",
    ]  # fmt: skip
    everything = parse_gpus("all", 8)
    placed = [device_for_child(child, everything) for child in range(8)]
    assert placed == [f"cuda:{gpu}" for gpu in range(8)]  # one child per GPU, none shared
    with pytest.raises(GpuSpecError):
        device_for_child(0, [])


def test_worker_gpus_on_a_machine_without_cuda_is_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CLIPDEX_BROKER_URL="redis://127.0.0.1:6379/0")
    result = subprocess.run(
        [sys.executable, "-m", "clipdex", "worker", "--gpus", "all"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "torch sees no CUDA GPU" in result.stderr and len(result.stderr.splitlines()) == 1
