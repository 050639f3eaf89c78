"""The families at the command line: listing them, strict configs, refusals, one clear line."""

from __future__ import annotations

import json

import pytest

from .conftest import needs_convert
from .test_cli import assert_clean_error, assert_one_line_usage_error, run_cli


def test_families_lists_every_family_and_every_refusal():
    from pocketlm.families import FAMILIES, REFUSED

    proc = run_cli("families", "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert [f["name"] for f in data["families"]] == list(FAMILIES)
    assert {r["task"] for r in data["refused"]} == set(REFUSED)
    must = {f["name"] for f in data["families"] if f["tier"] == "must"}
    assert must == {"gpt2", "opt", "llama", "llama3", "mistral", "qwen", "qwen3", "gemma",
                    "gemma2", "gemma3", "phi3", "smollm3"}
    text = run_cli("families", "--presets").stdout.decode()
    assert "gemma2_2b_en" in text and "RWKV-7 is a recurrent model" in text


def test_every_keras_hub_preset_maps_to_a_family_or_a_reason():
    """Each KerasHub causal LM preset name is either converted (its family is known) or
    refused with a reason, decided from pocketlm's own list without Keras."""
    from pocketlm.errors import UnsupportedModelError
    from pocketlm.families import family_for_task
    from pocketlm.presets import KERAS_HUB_PRESETS

    supported = refused = 0
    for name, task in KERAS_HUB_PRESETS.items():
        try:
            family_for_task(task, {})
            supported += 1
        except UnsupportedModelError as exc:
            assert str(exc).startswith(task), name
            refused += 1
    assert supported > 100 and refused > 0


@pytest.mark.parametrize("preset, reason", [
    ("rwkv7_g1a_0.1b_en", "RWKV-7 is a recurrent model"),
    ("pali_gemma_3b_mix_224", "vision-language model"),
    ("bart_base_en", "is an encoder-decoder model"),
])
def test_an_unsupported_keras_hub_preset_is_one_line_at_once(preset, reason, tmp_path):
    from pocketlm.presets import KERAS_HUB_PRESETS

    if preset not in KERAS_HUB_PRESETS:
        pytest.skip(f"{preset} is not a KerasHub preset in this keras-hub version")
    proc = run_cli("convert", "--preset", preset, "-o", str(tmp_path / "m.tflite"))
    assert_clean_error(proc, reason)
    assert b"loading the conversion stack" not in proc.stderr  # refused before TensorFlow


def test_an_unknown_family_is_a_usage_error(tmp_path):
    proc = run_cli("convert", "--random", "tiny", "--family", "gpt5", "-o",
                   str(tmp_path / "m.tflite"))
    assert proc.returncode == 2 and b"unknown model family 'gpt5'" in proc.stderr
    assert proc.stderr.count(b"\n") == 1


def test_family_goes_with_random(tmp_path):
    assert_one_line_usage_error(
        run_cli("convert", "--family", "llama", "-o", str(tmp_path / "m.tflite")),
        "pocketlm: error: --family goes with --random (a preset knows its family)")


def test_a_gpt2_config_with_unknown_or_missing_keys_is_one_line(tmp_path):
    from pocketlm.config import ModelConfig

    good = ModelConfig.tiny().to_dict()
    cases = {"unknown": ({**good, "num_kv_heads": 2}, "unknown key(s) num_kv_heads"),
             "missing": ({k: v for k, v in good.items() if k != "dropout"},
                         "missing key(s) dropout")}
    for name, (config, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        proc = run_cli("convert", "--random", str(path), "-o", str(tmp_path / "m.tflite"))
        assert proc.returncode == 2 and message in proc.stderr.decode()
        assert proc.stderr.count(b"\n") == 1 and b"Traceback" not in proc.stderr


@needs_convert
def test_a_family_config_with_unknown_or_missing_keys_is_one_line(tmp_path):
    """Checked against the family's KerasHub backbone arguments: never a silent default."""
    cases = {
        "unknown": ({"family": "qwen", "vocabulary_size": 400, "num_layers": 2,
                     "num_query_heads": 4, "num_key_value_heads": 2, "hidden_dim": 32,
                     "intermediate_dim": 64, "num_heads": 4}, "unknown key(s) num_heads"),
        "missing": ({"family": "llama", "vocabulary_size": 400, "num_layers": 2,
                     "hidden_dim": 32}, "missing key(s) intermediate_dim, "
                                        "num_key_value_heads, num_query_heads"),
    }
    for name, (config, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        proc = run_cli("convert", "--random", str(path), "-o", str(tmp_path / "m.tflite"))
        err = proc.stderr.decode()
        assert proc.returncode == 2 and message in err, err
        assert "Traceback" not in err
        assert [line for line in err.splitlines() if "error" in line] == [err.splitlines()[-1]]


@needs_convert
def test_a_tiny_model_of_another_family_converts_and_generates_from_the_cli(tmp_path):
    out = tmp_path / "qwen3.tflite"
    proc = run_cli("convert", "--random", "tiny", "--family", "qwen3", "-q", "dynamic-int8",
                   "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    info = run_cli("info", str(out), "--json")
    contract = json.loads(info.stdout)["contract"]
    assert contract["model_type"] == "qwen3" and contract["tokenizer"] == "gpt2-bpe"
    # The hand-written graph's cache: [1, kv_heads, S, head_dim] (2 KV heads of 8).
    assert contract["cache_layout"] == "heads-first" and contract["start_token_id"] is None
    assert contract["cache_shape"] == [1, 2, 256, 8]
    proc = run_cli("generate", str(out), "Once upon a time", "-n", "5", "--trust")
    assert proc.returncode == 0 and proc.stdout.decode().startswith("Once upon a time")
