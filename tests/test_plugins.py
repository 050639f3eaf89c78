"""Any compatible .tflite LLM plugs in: the runtime inspects a file and picks how to run it.

Every kind is built from the same tiny random GPT-2 and completed through the same
``pocketlm generate`` command: pocketlm's KV-cache file, Keras' own
``model.export(format="litert")`` (dynamic shapes with the preprocessor's tables, and a
fixed shape without them), and the recipe's string model (in the Flex-capable TensorFlow).
Greedy decoding of the same weights must give the same text whatever the kind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pocketlm.tokenizer import BPETokenizer, gpt2_vocab_files

from .conftest import needs_convert
from .test_android_format import FLEX_PYTHON, MAX_LENGTH, android_model, needs_flex
from .test_cli import assert_clean_error, run_cli
from .test_runtime_without_tensorflow import BLOCKER

pytestmark = needs_convert
PROMPT = "I'm enjoying a"
STATIC_LENGTH = 32


@pytest.fixture(scope="session")
def keras_exports(tiny_authored, tmp_path_factory) -> dict[str, Path]:
    """The tiny model through Keras' own LiteRT export, two ways."""
    import keras_hub
    import tensorflow as tf

    out = tmp_path_factory.mktemp("keras-litert")
    paths = {"dynamic": out / "keras-dynamic.tflite", "static": out / "keras-static.tflite"}
    # As a user exports right after from_preset: the preprocessor (and its hash tables,
    # filled by a Select-TF initializer) comes along; token_ids is [-1, -1].
    tiny_authored.causal_lm.export(str(paths["dynamic"]), format="litert", verbose=False)
    bare = keras_hub.models.GPT2CausalLM(backbone=tiny_authored.backbone, preprocessor=None)
    spec = {name: tf.TensorSpec([1, STATIC_LENGTH], tf.int32, name=name)
            for name in ("token_ids", "padding_mask")}
    bare.export(str(paths["static"]), format="litert", verbose=False, input_signature=spec)
    return paths


@pytest.fixture(scope="session")
def classifier(tmp_path_factory) -> Path:
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((4,), name="features"),
                                 tf.keras.layers.Dense(3)])
    path = tmp_path_factory.mktemp("classifier") / "classifier.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def generate(model: Path, *extra: str, python: str = sys.executable) -> str:
    proc = subprocess.run([python, "-m", "pocketlm.cli", "generate", str(model), PROMPT, *extra],
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    text = proc.stdout.decode()
    assert text.startswith(PROMPT) and text.endswith("\n")
    return text[len(PROMPT):-1]


def test_info_names_the_contract_of_every_kind(tiny_models, keras_exports, classifier,
                                               tmp_path_factory):
    android = android_model("none", tmp_path_factory)
    expected = {tiny_models["none"]: ("pocketlm-kv-cache", "pocketlm.kv-cache"),
                android: ("android-string", "string in, string out"),
                keras_exports["dynamic"]: ("keras-litert", "Keras model.export"),
                keras_exports["static"]: ("keras-litert", "Keras model.export"),
                classifier: ("unknown", "not a compatible language model")}
    for path, (kind, name) in expected.items():
        proc = run_cli("info", str(path))
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        out = proc.stdout.decode()
        assert f"kind:      {kind}\n" in out and f"format:    {name}" in out, out[:600]
    out = run_cli("info", str(keras_exports["dynamic"])).stdout.decode()
    assert "serving_default(token_ids, padding_mask) -> output_0: logits [1, T, 50257]" in out
    assert "FlexHashTableV2" in out  # the preprocessor's tables came along


def test_every_kind_generates_through_the_same_cli_command(tiny_models, keras_exports,
                                                           tiny_authored, tmp_path_factory):
    n = "8"
    kv = generate(tiny_models["none"], "-n", n)
    assert len(BPETokenizer.gpt2().encode(kv)) >= 4  # a real continuation
    # No cache, window recomputed every step: same weights, same greedy text.
    assert generate(keras_exports["dynamic"], "-n", n, "--tokenizer", "gpt2") == kv
    vocab, merges = gpt2_vocab_files()
    assert generate(keras_exports["static"], "-n", n, "--tokenizer", f"{vocab},{merges}") == kv
    if not FLEX_PYTHON:
        pytest.skip("the string model needs POCKETLM_FLEX_PYTHON (scripts/test.sh sets it)")
    # The string model's greedy loop runs in its graph: compare it with Keras generate()
    # itself, cut to the same token count.
    from pocketlm.export_android import keras_greedy_text

    android = android_model("none", tmp_path_factory)
    keras_text = keras_greedy_text(tiny_authored, PROMPT, MAX_LENGTH)[len(PROMPT):]
    tok = BPETokenizer.gpt2()
    want = tok.decode(tok.encode(keras_text)[:int(n)])
    assert generate(android, "-n", n, python=FLEX_PYTHON) == want
    assert generate(android, python=FLEX_PYTHON) == keras_text  # the whole continuation


def test_the_keras_export_runs_without_tensorflow(keras_exports):
    """Its Select-TF initializer is skipped, so ai-edge-litert alone runs the logits."""
    model = str(keras_exports["dynamic"])
    code = BLOCKER + textwrap.dedent(f"""
        from pocketlm.runtime import load_model
        from pocketlm.cli import main
        model = load_model({model!r}, tokenizer="gpt2")
        assert model.dropped_initializer and model.sequence_length == 128, model.sequence_length
        assert main(["generate", {model!r}, "I'm enjoying a", "-n", "5", "--tokenizer",
                     "gpt2"]) == 0
        assert not any(m.split(".")[0] in HEAVY for m in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(PROMPT)


def test_a_fixed_shape_export_is_padded_to_its_window(keras_exports):
    from pocketlm.runtime import load_model

    model = load_model(keras_exports["static"], tokenizer="gpt2")
    assert model.static_length == STATIC_LENGTH == model.sequence_length
    assert not model.dropped_initializer
    # The window fills up: generation stops there instead of failing.
    proc = run_cli("generate", str(keras_exports["static"]), PROMPT, "-n", "100",
                   "--tokenizer", "gpt2", "--stats")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"(window_full)" in proc.stderr


def test_a_keras_export_needs_a_tokenizer(keras_exports):
    proc = run_cli("generate", str(keras_exports["dynamic"]), PROMPT)
    assert_clean_error(proc, "carries no tokenizer: pass --tokenizer")
    proc = run_cli("generate", str(keras_exports["dynamic"]), PROMPT, "--tokenizer",
                   str(Path(keras_exports["dynamic"]).parent / "nothing-here"))
    assert_clean_error(proc, "is none of these")


def test_a_non_llm_tflite_is_refused_with_what_it_has(classifier):
    proc = run_cli("generate", str(classifier), PROMPT)
    assert_clean_error(proc, "classifier.tflite is not a compatible language model")
    err = proc.stderr.decode()
    # It lists the signature, its inputs and its outputs, and what would have fitted.
    assert "serving_default(features[1, 4]:float32) -> (output_0[1, 3]:float32)" in err
    assert "string-in, string-out" in err and "token_ids, padding_mask -> logits" in err


@needs_flex
def test_sampling_options_do_not_apply_to_the_string_model(tmp_path_factory):
    android = android_model("none", tmp_path_factory)
    proc = subprocess.run([FLEX_PYTHON, "-m", "pocketlm.cli", "generate", str(android), PROMPT,
                           "-t", "0.8", "--stats"], capture_output=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"do not apply" in proc.stderr and b"the graph ran the whole generation" in proc.stderr


def test_a_string_model_without_pocketlm_metadata_is_recognised(tmp_path_factory, tmp_path):
    """A recipe file written elsewhere has no pocketlm metadata: its signature is enough."""
    from ai_edge_litert.tools import flatbuffer_utils

    from pocketlm.contract import METADATA_KEY, TOKENIZER_METADATA_KEY

    obj = flatbuffer_utils.read_model(str(android_model("none", tmp_path_factory)))
    obj.metadata = [m for m in obj.metadata
                    if m.name.decode() not in (METADATA_KEY, TOKENIZER_METADATA_KEY)]
    bare = tmp_path / "autocomplete.tflite"
    flatbuffer_utils.write_model(obj, str(bare))
    out = run_cli("info", str(bare)).stdout.decode()
    assert "kind:      android-string" in out and "contract:  none" in out
    assert "frozen" not in out  # the max length is not recorded anywhere but in the graph
    if FLEX_PYTHON:  # the GPT-2 tokenizer is the default for counting tokens
        assert generate(bare, "-n", "5", python=FLEX_PYTHON) == generate(
            android_model("none", tmp_path_factory), "-n", "5", python=FLEX_PYTHON)
