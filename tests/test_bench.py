"""``pocketlm bench`` measures each model in its own process: load time, speed and peak RSS
are that model's alone, whatever the parent holds (``--build-standard`` converts models in
the parent first, several GiB)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from .conftest import needs_convert

PARENT_EXTRA_MIB = 700  # the parent holds this much more than any child needs


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory) -> tuple[Path, Path]:
    """The same float32 model shape with hidden size 32 (about 7 MiB) and 128 (about 26)."""
    from pocketlm.authoring import random_causal_lm
    from pocketlm.config import ExportConfig, ModelConfig
    from pocketlm.export import export

    out = tmp_path_factory.mktemp("bench-models")
    paths = []
    for hidden in (32, 128):
        cfg = dataclasses.replace(ModelConfig.tiny(), hidden_dim=hidden,
                                  intermediate_dim=2 * hidden)
        model = random_causal_lm(cfg, sequence_length=64, seed=0)
        paths.append(export(model, out / f"h{hidden}.tflite",
                            ExportConfig(sequence_length=64, prefill_lengths=(16, 4),
                                         quantization="none"),
                            progress=lambda _m: None).path)
    return paths[0], paths[1]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM (Linux)")
@needs_convert
def test_each_model_reports_its_own_peak_rss(two_sizes, monkeypatch):
    import pocketlm.runtime
    from pocketlm.bench import BenchConfig, bench

    small, large = two_sizes
    # The parent must never load a model itself: only its children do.
    monkeypatch.setattr(pocketlm.runtime, "load_model",
                        lambda *a, **k: pytest.fail("the parent loaded a model"))
    ballast = np.ones(PARENT_EXTRA_MIB * 2**20 // 8)  # touched: resident in the parent
    report = bench([str(small), str(large)], BenchConfig(runs=1, warmup=0, new_tokens=8))
    parent_peak = _vm_hwm_mib()
    del ballast

    results = {Path(r["model"]): r for r in report["results"]}
    assert all("error" not in r for r in results.values()), results
    peak = {p: results[p]["peak_rss_mb"] for p in (small, large)}
    for p, mib in peak.items():
        # Not the parent's peak (what ru_maxrss, carried over fork and exec, reported).
        assert mib < parent_peak - PARENT_EXTRA_MIB / 2, (p, mib, parent_peak)
        assert results[p]["rss_before_load_mb"] < mib
    # The larger file costs more memory: at least half its extra size.
    extra_file = (large.stat().st_size - small.stat().st_size) / 2**20
    assert extra_file > 15
    assert peak[large] - peak[small] >= extra_file / 2, (peak, extra_file)
