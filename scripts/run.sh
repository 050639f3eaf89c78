#!/usr/bin/env bash
# The main job on a fresh machine: install pocketlm with its conversion stack into .venv,
# then run `pocketlm demo` (convert, cache, complete a prompt, print size and speed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[convert]'
exec .venv/bin/pocketlm demo "$@"
