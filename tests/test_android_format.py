"""The recipe's Android format: string in, string out, tokenizer and decode loop in the graph.

The file is built from the tiny random GPT-2 through ``pocketlm convert --format android``
(float32) and through the library (dynamic-range int8). It must carry its weights, have the
Android example's signature, and, run by the Flex-capable TensorFlow 2.19.1 that
scripts/test.sh installs in .venv-flex, return exactly what Keras ``generate()`` returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pocketlm.config import Quantization
from pocketlm.contract import METADATA_KEY
from pocketlm.errors import ConversionError
from pocketlm.flatbuf import summarize

from .conftest import TINY_SEQ, needs_convert
from .test_cli import assert_clean_error, run_cli
from .test_runtime_without_tensorflow import BLOCKER

pytestmark = needs_convert
MAX_LENGTH = 24  # frozen into the file; small so that every test run stays quick
FLEX_PYTHON = os.environ.get("POCKETLM_FLEX_PYTHON")
needs_flex = pytest.mark.skipif(
    not FLEX_PYTHON, reason="set POCKETLM_FLEX_PYTHON to a venv with tensorflow==2.19.1 and "
                            "tensorflow-text==2.19.0 (scripts/test.sh makes .venv-flex)")
PROMPTS = ["I'm enjoying a", "The weather in Paris is", "Café au lait ☕ and",
           # Longer than MAX_LENGTH tokens: the graph keeps its first MAX_LENGTH - 1 tokens.
           "It was the best of times, it was the worst of times, it was the age of wisdom, "
           "it was the age of foolishness, it was the epoch of belief"]

_BUILT: dict[str, Path] = {}  # quantization -> file, shared with tests/test_plugins.py


def android_model(quantization: str, tmp_path_factory) -> Path:
    """The tiny model in the android format, converted once per session."""
    if quantization not in _BUILT:
        out = tmp_path_factory.mktemp("android") / f"tiny-android-{quantization}.tflite"
        if quantization == "none":
            # Through the CLI, as a user would: this also checks it against Keras generate().
            proc = run_cli("convert", "--random", "tiny", "--seed", "0", "--format", "android",
                           "--max-length", str(MAX_LENGTH), "--sequence-length", str(TINY_SEQ),
                           "-q", "none", "-o", str(out))
            assert proc.returncode == 0, proc.stderr.decode()[-3000:]
            assert b"warning: the graph gives" not in proc.stderr, proc.stderr.decode()[-3000:]
        else:
            from pocketlm.authoring import random_causal_lm
            from pocketlm.config import ModelConfig
            from pocketlm.export_android import export_android

            authored = random_causal_lm(ModelConfig.tiny(), TINY_SEQ, seed=0)
            export_android(authored, out, MAX_LENGTH, quantization, progress=lambda _m: None,
                           verify=False)
        _BUILT[quantization] = out
    return _BUILT[quantization]


@pytest.fixture(scope="session")
def android_none(tmp_path_factory) -> Path:
    return android_model("none", tmp_path_factory)


@pytest.fixture(scope="session")
def android_int8(tmp_path_factory) -> Path:
    return android_model("dynamic-int8", tmp_path_factory)


def expected_parameters(authored) -> int:
    """Backbone parameters the graph keeps: all, less the position rows past MAX_LENGTH."""
    c = authored.config
    return authored.backbone.count_params() - (c.max_sequence_length - MAX_LENGTH) * c.hidden_dim


def run_in_flex(model: Path, prompts: list[str]) -> list[str]:
    """Run the file as the Android example does, in the Flex-capable TensorFlow."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  registers the kernels behind the Flex ops
        interpreter = tf.lite.Interpreter(model_path=sys.argv[1])
        runner = interpreter.get_signature_runner("serving_default")
        outs = [runner(prompt=np.array([p]))["output_0"].item().decode("utf-8")
                for p in json.loads(sys.argv[2])]
        print("RESULT " + json.dumps(outs))
    """)
    proc = subprocess.run([FLEX_PYTHON, "-c", script, str(model), json.dumps(prompts)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_the_file_has_the_recipe_contract_and_its_weights(android_none, android_int8,
                                                           tiny_authored):
    from pocketlm.export_android import check_file, max_rank

    params = expected_parameters(tiny_authored)
    sizes = {}
    for mode, path in (("none", android_none), ("dynamic-int8", android_int8)):
        s = summarize(path)
        sig = s.signatures["serving_default"]
        assert {n: (t.shape, t.dtype) for n, t in sig.inputs.items()} == {"prompt": ([], "string")}
        assert {n: (t.shape, t.dtype) for n, t in sig.outputs.items()} == {
            "output_0": ([], "string")}
        contract = json.loads(s.metadata[METADATA_KEY])
        assert contract["contract"] == "pocketlm.android-string"
        assert contract["sequence_length"] == MAX_LENGTH and contract["quantization"] == mode
        # The tokenizer is in the graph: its tf-text ops are Select-TF ops.
        assert {"CUSTOM:FlexRegexSplitWithOffsets", "CUSTOM:FlexUnicodeEncode"} <= set(
            s.op_histogram)
        assert "WHILE" in s.op_histogram  # the decode loop
        assert not any("Variable" in op or "VarHandle" in op for op in s.op_histogram)
        assert max_rank(path.read_bytes())[0] <= 5
        # The weights are really in the file (the Keras 3 trap leaves them out).
        held = check_file(path.read_bytes(), params, Quantization(mode))
        assert held >= 0.95 * params * (4 if mode == "none" else 1)
        sizes[mode] = s.file_size
    assert sizes["dynamic-int8"] < 0.85 * sizes["none"]


def test_check_file_catches_the_keras3_weight_trap():
    """Converting a Keras 3 model by its concrete function drops the weights silently."""
    import keras
    import tensorflow as tf

    from pocketlm.export_android import check_file

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
    fn = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([1, 64], tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                      tf.lite.OpsSet.SELECT_TF_OPS]
    with pytest.raises(ConversionError, match="weights were left out"):
        check_file(conv.convert(), model.count_params(), Quantization.NONE)


def test_full_int8_is_refused_up_front(tiny_authored, tmp_path):
    from pocketlm.export_android import export_android

    with pytest.raises(ConversionError, match="supports none, dynamic-int8, float16"):
        export_android(tiny_authored, tmp_path / "x.tflite", MAX_LENGTH, "full-int8")
    with pytest.raises(ConversionError, match="max length"):
        export_android(tiny_authored, tmp_path / "x.tflite", 10_000, "none")
    assert not (tmp_path / "x.tflite").exists()


@needs_flex
def test_flex_runtime_output_equals_keras_generate(android_none, android_int8, tiny_authored):
    """The Android example's call, in TF 2.19.1: the same string as Keras generate()."""
    from pocketlm.export_android import keras_greedy_text

    want = [keras_greedy_text(tiny_authored, p, MAX_LENGTH) for p in PROMPTS]
    got = run_in_flex(android_none, PROMPTS)
    assert got == want
    for prompt, text in zip(PROMPTS[:3], want[:3]):
        assert text.startswith(prompt) and len(text) > len(prompt)  # a real continuation
    assert PROMPTS[3].startswith(want[3])  # cut at the frozen max length, nothing added
    # Dynamic-range int8 runs too and continues the prompt (its tokens may differ).
    for prompt, text in zip(PROMPTS, run_in_flex(android_int8, PROMPTS)):
        assert text.startswith(prompt[:40])


@needs_flex
@pytest.mark.slow
def test_float16_converts_and_runs(tiny_authored, tmp_path):
    from pocketlm.export_android import export_android, keras_greedy_text

    out = export_android(tiny_authored, tmp_path / "f16.tflite", MAX_LENGTH, "float16",
                         progress=lambda _m: None, verify=False)
    assert out.weight_bytes >= 2 * expected_parameters(tiny_authored)
    got = run_in_flex(out.path, PROMPTS[:1])
    assert got[0].startswith(PROMPTS[0]) and len(got[0]) > len(PROMPTS[0])
    # float16 weights move logits by ~1e-3: the greedy text usually stays the same.
    print("float16:", got[0], "| keras:", keras_greedy_text(tiny_authored, PROMPTS[0],
                                                             MAX_LENGTH))


def test_without_a_flex_runtime_the_error_says_what_to_install(android_none):
    # This venv has TensorFlow 2.21, whose interpreter has no Flex delegate.
    proc = run_cli("generate", str(android_none), "I'm enjoying a")
    assert_clean_error(proc, "pip install tensorflow==2.19.1 tensorflow-text==2.19.0")
    # Without TensorFlow at all (the runtime-only install), the same advice.
    code = BLOCKER + textwrap.dedent(f"""
        from pocketlm.errors import ContractError
        from pocketlm.runtime import load_model
        try:
            load_model({str(android_none)!r})
        except ContractError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TensorFlow is not installed" in proc.stdout
    assert "pip install tensorflow==2.19.1 tensorflow-text==2.19.0" in proc.stdout


def test_info_names_the_android_contract(android_none):
    proc = run_cli("info", str(android_none))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode()
    assert "kind:      android-string" in out
    assert "serving_default(prompt: string) -> output_0: string" in out
    assert f"max length {MAX_LENGTH} frozen" in out and "tensorflow==2.19.1" in out
    assert "select-tf:" in out and "FlexRegexSplitWithOffsets" in out
