"""Every command's help has an example and speaks in words, every command takes --json, and
``clipdex --version`` answers without importing torch."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from clipdex.cli import command, versions

pytestmark = pytest.mark.unit

# Python type names as the CLI framework prints them unless told otherwise (typer: <str>,
# <bool>...; click: BOOLEAN). A label that is a parameter's own name (TEXT, NAME) is fine.
RAW_TYPES = re.compile(r"<(str|int|float|bool|path|class [^>]*|list\[[^\]]*\])>|\bBOOLEAN\b")


def commands(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, node
    for name, sub in sorted(getattr(node, "commands", {}).items()):
        if not getattr(sub, "hidden", False):
            yield from commands(sub, (*path, name))


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        command(), [*path, "--help"], prog_name="clipdex", env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, (path, result.output)
    return result.output


ALL = list(commands(command()))


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "clipdex")
def test_help_has_an_example_and_no_raw_type_names(path: tuple[str, ...]) -> None:
    text = help_of(path)
    assert "Example: clipdex" in text, text
    assert not RAW_TYPES.search(text), RAW_TYPES.search(text)


@pytest.mark.parametrize(
    "path",
    [p for p, node in ALL if not hasattr(node, "commands")],
    ids=lambda p: " ".join(p),
)
def test_every_command_takes_json(path: tuple[str, ...]) -> None:
    node = dict(ALL)[path]
    assert "--json" in {opt for param in node.params for opt in param.opts}, path


def test_the_walk_sees_every_group() -> None:
    names = {" ".join(p) for p, _ in ALL}
    assert {"search", "duplicates", "classify", "serve", "worker", "migrate", "texts add"} <= names


def test_version_names_clipdex_open_clip_and_torch_without_importing_torch() -> None:
    probe = (
        "import sys\n"
        "from clipdex.cli import main\n"
        "sys.argv = ['clipdex', '--version']\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    found = versions()
    first, last = result.stdout.strip().splitlines()
    assert first == (
        f"clipdex {found['clipdex']} (open_clip {found['open_clip_torch']}, torch {found['torch']})"
    )
    assert re.fullmatch(r"clipdex \d+\.\d+\S* \(open_clip \d\S*, torch \d\S*\)", first)
    assert last == "torch not imported"
