"""Shared fixtures: tiny random GPT-2 models converted once per test session."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HAVE_CONVERT_STACK = all(importlib.util.find_spec(m) is not None
                         for m in ("tensorflow", "keras_hub"))
needs_convert = pytest.mark.skipif(not HAVE_CONVERT_STACK,
                                   reason="needs the conversion stack: pip install .[convert]")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_SEQ = 64
TINY_PREFILL = (16, 4)
MODES = ("none", "dynamic-int8", "float16", "full-int8", "int4")


@pytest.fixture(scope="session")
def tiny_authored():
    if not HAVE_CONVERT_STACK:
        pytest.skip("needs the conversion stack: pip install .[convert]")
    from pocketlm.authoring import random_causal_lm
    from pocketlm.config import ModelConfig

    return random_causal_lm(ModelConfig.tiny(), sequence_length=TINY_SEQ, seed=0)


@pytest.fixture(scope="session")
def tiny_models(tiny_authored, tmp_path_factory) -> dict[str, Path]:
    """The tiny random GPT-2 converted in every quantization mode."""
    from pocketlm.config import ExportConfig
    from pocketlm.export import export

    out = tmp_path_factory.mktemp("tiny-models")
    paths = {}
    for mode in MODES:
        cfg = ExportConfig(sequence_length=TINY_SEQ, prefill_lengths=TINY_PREFILL,
                           quantization=mode, calibration_samples=8)
        paths[mode] = export(tiny_authored, out / f"tiny-{mode}.tflite", cfg,
                             progress=lambda _msg: None).path
    return paths


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep pocketlm's caches (converted models, XNNPACK weights, verified files) out of the
    user's home: every test process and its children use a fresh folder."""
    os.environ["POCKETLM_CACHE"] = str(tmp_path_factory.mktemp("pocketlm-cache"))
    yield


def pytest_terminal_summary(terminalreporter):
    """Top-1 agreement of every quantization mode with the Keras float model, per family
    (teacher-forced over 64 random tokens; random weights exaggerate the disagreement)."""
    from . import test_families

    if not test_families.AGREEMENT:
        return
    modes = sorted({m for _, m in test_families.AGREEMENT})
    families = sorted({f for f, _ in test_families.AGREEMENT})
    terminalreporter.section("families: top-1 agreement with Keras (tiny random models)")
    terminalreporter.write_line("family      " + "".join(f"{m:>14}" for m in modes))
    for fam in families:
        cells = [test_families.AGREEMENT.get((fam, m)) for m in modes]
        terminalreporter.write_line(f"{fam:<12}" + "".join(
            f"{c:>14.2f}" if c is not None else f"{'-':>14}" for c in cells))
