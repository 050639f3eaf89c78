"""The main job (what scripts/run.sh runs) on the embedded model, offline."""

from __future__ import annotations

import os
import subprocess
import sys

from pocketlm.presets import DEFAULT_PRESET, available_presets

from .conftest import needs_convert


def test_the_embedded_preset_ships_with_the_package():
    assert DEFAULT_PRESET in available_presets()


@needs_convert
def test_demo_converts_once_then_uses_the_cache(tmp_path):
    env = {**os.environ, "POCKETLM_CACHE": str(tmp_path)}  # a cache of its own: a first run
    cmd = [sys.executable, "-m", "pocketlm.cli", "demo", "-n", "12"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("I'm enjoying a") == 1
    assert "converted now" in first.stdout and "tokens/s" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0 and "cached" in second.stdout
    # Seeded sampling: the same completion both times.
    body = lambda out: out.split("--- completion")[1].split("-----")[0]  # noqa: E731
    assert body(first.stdout) == body(second.stdout)
