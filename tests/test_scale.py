"""The recipe's 1.5B class on this machine: the Qwen 2.5 1.5B shape (random weights from a
fixed seed) converts in parts within 20 GiB and generates 16 tokens in the TF-free runtime.

Marked ``huge`` (about 7-10 minutes and 8 GiB on 2 cores), deselected by default; run it with
``.venv/bin/python -m pytest -m huge tests/test_scale.py``. Its output is in docs/scale.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import needs_convert

pytestmark = [pytest.mark.huge, pytest.mark.slow, needs_convert]
LIMIT_GIB = 20.0


def _tree_rss_kib(root: int) -> int:
    """Resident memory of ``root`` and every process below it, KiB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0").strip() or 0), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def _run_measured(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``; (its result, the peak RSS of its whole process tree in GiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def watch() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak[0] / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_qwen_1_5b_shape_converts_in_parts_within_20_gib_and_generates(tmp_path):
    from pocketlm.config import GenerationConfig
    from pocketlm.runtime import complete, load_model

    out = tmp_path / "qwen2.5-1.5b-int8.tflite"
    done, peak = _run_measured([sys.executable, "-m", "pocketlm.cli", "convert", "--random",
                                "qwen2.5-1.5b", "-q", "dynamic-int8", "-o", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\nconversion peak RSS (process tree): {peak:.2f} GiB")
    assert peak <= LIMIT_GIB
    assert "parts" in done.stderr and "about" in done.stderr  # progress with time left
    model = load_model(out)
    assert model.info.notes["parts"] > 1 and model.info.num_layers == 28
    assert os.path.getsize(out) > 1.4e9  # 1.54B weights, int8
    result = complete(model, "The quick brown fox", GenerationConfig(
        max_new_tokens=16, stop_at_end_token=False))
    assert len(result.token_ids) == 16
    assert all(0 <= t < 151_936 for t in result.token_ids)
