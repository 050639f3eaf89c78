#!/usr/bin/env bash
# Install everything the tests need into .venv (plus a runtime-only .venv-runtime that has
# no TensorFlow, to prove `pocketlm generate` works without it, and .venv-flex with the
# Flex-capable TensorFlow 2.19.1), then run the test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[convert,test,litert-lm]'
[ -x .venv-runtime/bin/python ] || "$PY" -m venv .venv-runtime
.venv-runtime/bin/python -m pip install -q --disable-pip-version-check .
export POCKETLM_RUNTIME_PYTHON="$PWD/.venv-runtime/bin/python"
# TensorFlow 2.19.1 is the newest whose tf.lite.Interpreter still runs Select-TF (Flex) ops:
# the tests run the android-format model in it (see docs/formats.md).
[ -x .venv-flex/bin/python ] || "$PY" -m venv .venv-flex
.venv-flex/bin/python -m pip install -q --disable-pip-version-check \
    tensorflow==2.19.1 tensorflow-text==2.19.0 -e .
export POCKETLM_FLEX_PYTHON="$PWD/.venv-flex/bin/python"
# The app's browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download cannot work here). CI runs as root; elsewhere those tests are skipped.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
        || echo "warning: could not install chromium; the browser tests will be skipped" >&2
fi
exec .venv/bin/python -m pytest "$@"
