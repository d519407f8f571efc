#!/usr/bin/env bash
# The README's main job: ingest a library on embedded defaults, search it, show status.
# With network access (or CLIPDEX_PRETRAINED pointing at a checkpoint) it uses the configured
# model (ViT-B-32, OpenAI weights by default). Offline it falls back, once and saying so, to
# the built-in tiny model, whose random weights make the rankings meaningless.
set -uo pipefail
cd "$(dirname "$0")/.."
LIBRARY="${1:-samples/photos}"
export CLIPDEX_HOME="${CLIPDEX_HOME:-.clipdex-demo}"
CLIPDEX=.venv/bin/clipdex

errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
if "$CLIPDEX" ingest "$LIBRARY" 2>"$errors"; then
    cat "$errors" >&2
else
    status=$?
    if [ -n "${CLIPDEX_MODEL:-}" ] || [ "$status" != 2 ]; then
        cat "$errors" >&2
        exit "$status"
    fi
    echo "demo: $(grep -m1 'error:' "$errors" | cut -c1-240)" >&2
    echo "demo: falling back to CLIPDEX_MODEL=clipdex-tiny (random weights: rankings are meaningless)" >&2
    export CLIPDEX_MODEL=clipdex-tiny
    "$CLIPDEX" ingest "$LIBRARY" || exit $?
fi
"$CLIPDEX" search "a dog on the beach" --limit 5 || exit $?
"$CLIPDEX" status
