"""The CLI: the user's flow end to end, and one clear line for each user mistake."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pocketlm.cli import main

from .conftest import needs_convert


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pocketlm.cli", *args], input=stdin,
                          capture_output=True, timeout=600)


def assert_clean_error(proc: subprocess.CompletedProcess, message: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert err.startswith("pocketlm: error: ") or "\npocketlm: error: " in err
    assert message in err
    assert "Traceback" not in err


def test_missing_file(tmp_path):
    proc = run_cli("generate", str(tmp_path / "nope.tflite"), "hi")
    assert_clean_error(proc, "model file not found")
    assert proc.returncode == 2


@pytest.mark.parametrize("content", [b"", b"hello world, not a model at all", b"\x00" * 64])
def test_not_a_flatbuffer(tmp_path, content):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    for cmd in (["info", str(bad)], ["generate", str(bad), "hi"]):
        assert_clean_error(run_cli(*cmd), "bad.tflite is not a .tflite model")


@needs_convert
def test_tflite_without_the_contract(tmp_path):
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    path = tmp_path / "classifier.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    proc = run_cli("generate", str(path), "hi")
    assert_clean_error(proc, "classifier.tflite is not a compatible language model")
    assert "serving_default(" in proc.stderr.decode()  # it lists what it found
    info = run_cli("info", str(path))
    assert info.returncode == 0 and b"kind:      unknown" in info.stdout


@needs_convert
def test_unknown_preset(tmp_path):
    proc = run_cli("convert", "--preset", "no_such_preset", "-o", str(tmp_path / "x.tflite"))
    assert_clean_error(proc, "unknown preset 'no_such_preset'")
    assert b"gpt2_base_en" in proc.stderr
    proc = run_cli("convert", "--preset", str(tmp_path / "missing_dir"), "-o", "x.tflite")
    assert_clean_error(proc, "preset directory")
    assert not (tmp_path / "x.tflite").exists()


def test_bad_options_are_one_line():
    proc = run_cli("generate", "whatever.tflite", "hi", "--top-p", "0")
    assert_clean_error(proc, "top_p must be in (0, 1]")


@needs_convert
def test_convert_generate_info_through_the_cli(tmp_path, capsys):
    out = tmp_path / "model.tflite"
    proc = run_cli("convert", "--random", "tiny", "--quantize", "dynamic-int8",
                   "--sequence-length", "64", "--prefill-lengths", "16,4", "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert out.exists() and b"[3/4] converting" in proc.stderr
    assert main(["generate", str(out), "I'm enjoying a", "-n", "8"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("I'm enjoying a") and len(printed) > len("I'm enjoying a\n")
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pocketlm.kv-cache v1" in text and "quantized: dynamic-int8" in text
    assert "FULLY_CONNECTED" in text
    # Prompt on standard input, and a prompt that is not UTF-8.
    proc = run_cli("generate", str(out), "-", "-n", "4", stdin="Shall I compare".encode())
    assert proc.returncode == 0 and proc.stdout.startswith(b"Shall I compare")
    proc = run_cli("generate", str(out), "-", stdin=b"\xff\xfe bad bytes")
    assert_clean_error(proc, "the prompt is not valid UTF-8")
