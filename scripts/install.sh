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
.venv/bin/python -c "import torch; from clipdex.torch_compat import import_open_clip; \
import_open_clip(); print('clipdex installed: torch', torch.__version__)"
