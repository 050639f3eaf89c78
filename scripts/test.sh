#!/usr/bin/env bash
# Install everything the tests need into .venv (plus a runtime-only .venv-runtime that has
# no TensorFlow, to prove `pocketlm generate` works without it), then run the test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[convert,test]'
[ -x .venv-runtime/bin/python ] || "$PY" -m venv .venv-runtime
.venv-runtime/bin/python -m pip install -q --disable-pip-version-check .
export POCKETLM_RUNTIME_PYTHON="$PWD/.venv-runtime/bin/python"
exec .venv/bin/python -m pytest "$@"
