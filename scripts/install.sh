#!/usr/bin/env bash
# Create .venv and install clipdex with its dev tools, keeping torch on the build pinned in
# constraints.txt (see that file and clipdex/torch_compat.py for why torchvision is special).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt)
# torch first, so nothing later can resolve a different (multi-GB CUDA) build.
"${PIP[@]}" torch==2.13.0
# torchvision without its dependency list: unpinned, it would upgrade torch.
"${PIP[@]}" --no-deps torchvision==0.28.0
"${PIP[@]}" -e '.[dev]'
# The results-page test drives Debian's Chromium through Playwright (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: install Debian's chromium package for the results-page test" >&2
    fi
fi
.venv/bin/python -c "import torch; from core.torch_compat import import_open_clip; \
import_open_clip(); print('clipdex installed: torch', torch.__version__)"
