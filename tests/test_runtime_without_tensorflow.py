"""The runtime needs only ai-edge-litert, numpy and the tokenizer: never TensorFlow or Keras."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .conftest import REPO

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    HEAVY = {"tensorflow", "keras", "keras_hub", "keras_nlp", "tf_keras", "tensorflow_text"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"blocked: {name}")
    sys.meta_path.insert(0, Block())
    try:
        import tensorflow
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker does not work")
""")


def test_runtime_modules_import_with_tensorflow_blocked():
    code = BLOCKER + "import pocketlm.runtime, pocketlm.runtime.chat, pocketlm.cli, pocketlm.inspect; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_generate_and_info_with_tensorflow_blocked(tiny_models):
    model = str(tiny_models["dynamic-int8"])
    code = BLOCKER + textwrap.dedent(f"""
        from pocketlm.cli import main
        assert main(["generate", {model!r}, "I'm enjoying a", "-n", "10"]) == 0
        assert main(["info", {model!r}]) == 0
        assert not any(m.split(".")[0] in HEAVY for m in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("I'm enjoying a") and "pocketlm.kv-cache" in proc.stdout


RUNTIME_PYTHON = os.environ.get("POCKETLM_RUNTIME_PYTHON")


@pytest.mark.skipif(not RUNTIME_PYTHON, reason="set POCKETLM_RUNTIME_PYTHON to a venv with "
                    "only the base install (.ci/run does)")
def test_generate_in_a_venv_without_tensorflow(tiny_models):
    """In a venv made by `pip install .` (no extras) TensorFlow is absent, and generate works."""
    proc = subprocess.run([RUNTIME_PYTHON, "-c", "import tensorflow"], capture_output=True)
    assert proc.returncode != 0, "the runtime venv has TensorFlow installed"
    pocketlm = os.path.join(os.path.dirname(RUNTIME_PYTHON), "pocketlm")
    proc = subprocess.run([pocketlm, "generate", str(tiny_models["float16"]), "I'm enjoying a",
                           "-n", "10", "--stats"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("I'm enjoying a") and "tokens/s" in proc.stderr


@pytest.fixture(scope="module")
def other_families(tmp_path_factory) -> dict[str, str]:
    """Tiny models of a SentencePiece family (Llama) and a per-layer-cache family (Gemma 3),
    both dynamic-int8."""
    from .conftest import HAVE_CONVERT_STACK
    if not HAVE_CONVERT_STACK:
        pytest.skip("needs the conversion stack: pip install .[convert]")
    from pocketlm.config import ExportConfig
    from pocketlm.export import export
    from pocketlm.tiny import tiny_causal_lm

    out = tmp_path_factory.mktemp("families-no-tf")
    paths = {}
    for name in ("llama", "gemma3"):
        cfg = ExportConfig(sequence_length=64, prefill_lengths=(16, 4))
        paths[name] = str(export(tiny_causal_lm(name, 64), out / f"{name}.tflite", cfg,
                                 progress=lambda _m: None).path)
    return paths


def test_other_families_generate_with_tensorflow_blocked(other_families):
    code = BLOCKER + textwrap.dedent(f"""
        from pocketlm.cli import main
        for path in {sorted(other_families.values())!r}:
            assert main(["generate", path, "Once upon a time", "-n", "6", "--trust"]) == 0
            assert main(["chat", path, "--prompt", "Hi", "-n", "4", "--trust"]) == 0
        assert not any(m.split(".")[0] in HEAVY for m in sys.modules)
        assert "sentencepiece" in sys.modules  # the Llama tokenizer ran, without TensorFlow
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("Once upon a time") == 2


@pytest.mark.skipif(not RUNTIME_PYTHON, reason="set POCKETLM_RUNTIME_PYTHON to a venv with "
                    "only the base install (.ci/run does)")
def test_other_families_generate_in_a_venv_without_tensorflow(other_families):
    pocketlm = os.path.join(os.path.dirname(RUNTIME_PYTHON), "pocketlm")
    for path in other_families.values():
        proc = subprocess.run([pocketlm, "generate", path, "Once upon a time", "-n", "6"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith("Once upon a time")
