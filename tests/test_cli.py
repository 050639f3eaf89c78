"""The CLI: the user's flow end to end, and one clear line for each user mistake."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import pytest

from pocketlm.cli import main
from pocketlm.config import Quantization
from pocketlm.presets import available_presets

from .conftest import REPO, needs_convert


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
    assert b"pocketlm_gpt2_shakespeare" in proc.stderr and b"families --presets" in proc.stderr
    proc = run_cli("convert", "--preset", str(tmp_path / "missing_dir"), "-o", "x.tflite")
    assert_clean_error(proc, "preset directory")
    assert not (tmp_path / "x.tflite").exists()
    # The names are checked without importing Keras, from pocketlm's own list: keep it true.
    import keras_hub

    import importlib.util
    spec = importlib.util.spec_from_file_location("mk", REPO / "scripts/make_keras_hub_presets.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    from pocketlm.presets import KERAS_HUB_PRESETS
    assert KERAS_HUB_PRESETS == mk.keras_hub_presets()
    assert set(KERAS_HUB_PRESETS) == set(keras_hub.models.CausalLM.presets)


def assert_one_line_usage_error(proc: subprocess.CompletedProcess, line: str) -> None:
    """Exit code 2 and exactly ``line`` on stderr (plus its newline): no traceback."""
    assert proc.stderr.decode() == line + "\n"
    assert proc.returncode == 2
    assert proc.stdout == b""


# Every numeric option of every command: (arguments, the one line expected on stderr).
# The samples first (-t nan, -t inf, --seed -1), then the kind: NaN, infinity,
# out of range, not a number, in each command.
MODES = ", ".join(q.value for q in Quantization)


def _bad(cmd: str, option: str, message: str) -> str:
    return f"pocketlm: error: argument {option}: {message} (see `pocketlm {cmd} --help`)"


M = "model.tflite"
BAD_NUMBERS = [
    (["generate", M, "x", "-t", "nan"], _bad("generate", "-t/--temperature",
                                             "must be a finite number, not 'nan'")),
    (["generate", M, "x", "-t", "inf"], _bad("generate", "-t/--temperature",
                                             "must be a finite number, not 'inf'")),
    (["generate", M, "x", "--seed", "-1"], _bad("generate", "--seed",
                                                "must be in 0..4294967295, not -1")),
    (["generate", M, "x", "-t", "-0.5"], _bad("generate", "-t/--temperature",
                                              "must be in [0, 1e+06], not -0.5")),
    (["generate", M, "x", "--temperature=-inf"], _bad("generate", "-t/--temperature",
                                              "must be a finite number, not '-inf'")),
    (["generate", M, "x", "-t", "warm"], _bad("generate", "-t/--temperature",
                                              "must be a number, not 'warm'")),
    (["generate", M, "x", "--top-p", "0"], _bad("generate", "--top-p",
                                                "must be in (0, 1], not 0")),
    (["generate", M, "x", "--top-p", "1.5"], _bad("generate", "--top-p",
                                                  "must be in (0, 1], not 1.5")),
    (["generate", M, "x", "--top-p", "NaN"], _bad("generate", "--top-p",
                                                  "must be a finite number, not 'NaN'")),
    (["generate", M, "x", "--top-k", "-1"], _bad("generate", "--top-k",
                                                 "must be >= 0, not -1")),
    (["generate", M, "x", "-n", "-5"], _bad("generate", "-n/--max-new-tokens",
                                            "must be >= 0, not -5")),
    (["generate", M, "x", "-n", "1e3"], _bad("generate", "-n/--max-new-tokens",
                                             "must be a whole number, not '1e3'")),
    (["generate", M, "x", "--seed", "4294967296"],
     _bad("generate", "--seed", "must be in 0..4294967295, not 4294967296")),
    (["generate", M, "x", "--context-window", "0"], _bad("generate", "--context-window",
                                                         "must be >= 1, not 0")),
    (["generate", M, "x", "--threads", "0"], _bad("generate", "--threads",
                                                  "must be in 1..256, not 0")),
    (["demo", "--temperature", "nan"], _bad("demo", "-t/--temperature",
                                            "must be a finite number, not 'nan'")),
    (["demo", "--seed", "-1"], _bad("demo", "--seed", "must be in 0..4294967295, not -1")),
    (["demo", "-n", "-1"], _bad("demo", "-n/--max-new-tokens", "must be >= 0, not -1")),
    (["convert", "-o", "x.tflite", "--seed", "-1"],
     _bad("convert", "--seed", "must be in 0..4294967295, not -1")),
    (["convert", "-o", "x.tflite", "--sequence-length", "0"],
     _bad("convert", "--sequence-length", "must be in 2..65536, not 0")),
    (["convert", "-o", "x.tflite", "--prefill-lengths", "16,-4"],
     _bad("convert", "--prefill-lengths", "each must be >= 1, not -4")),
    (["convert", "-o", "x.tflite", "--calibration-samples", "0"],
     _bad("convert", "--calibration-samples", "must be in 1..100000, not 0")),
    (["convert", "-o", "x.tflite", "--max-length", "inf"],
     _bad("convert", "--max-length", "must be a whole number, not 'inf'")),
    (["eval", M, "--text", "t.txt", "--holdout", "1"],
     _bad("eval", "--holdout", "must be in (0, 1), not 1")),
    (["eval", M, "--text", "t.txt", "--holdout", "nan"],
     _bad("eval", "--holdout", "must be a finite number, not 'nan'")),
    (["eval", M, "--text", "t.txt", "--window", "1"],
     _bad("eval", "--window", "must be in 2..65536, not 1")),
    (["eval", M, "--text", "t.txt", "--stride", "0"],
     _bad("eval", "--stride", "must be in 1..65536, not 0")),
    (["eval", M, "--text", "t.txt", "--max-tokens", "-3"],
     _bad("eval", "--max-tokens", "must be >= 2, not -3")),
    (["compare", "--text", "t.txt", "-o", "d", "--bench-runs", "0"],
     _bad("compare", "--bench-runs", "must be in 1..1000, not 0")),
    (["compare", "--text", "t.txt", "-o", "d", "--holdout", "-0.1"],
     _bad("compare", "--holdout", "must be in (0, 1), not -0.1")),
    (["bench", M, "--runs", "0"], _bad("bench", "--runs", "must be in 1..1000, not 0")),
    (["bench", M, "--warmup", "-1"], _bad("bench", "--warmup", "must be in 0..100, not -1")),
    (["bench", M, "--new-tokens", "nan"], _bad("bench", "--new-tokens",
                                               "must be a whole number, not 'nan'")),
    (["serve", "--port", "65536"], _bad("serve", "-p/--port", "must be in 0..65535, not 65536")),
    (["serve", "--port", "-1"], _bad("serve", "-p/--port", "must be in 0..65535, not -1")),
    (["serve", "--queue-size", "-1"], _bad("serve", "--queue-size",
                                           "must be in 0..10000, not -1")),
    (["serve", "--token-delay", "inf"], _bad("serve", "--token-delay",
                                             "must be a finite number, not 'inf'")),
    (["serve", "--token-delay", "-1"], _bad("serve", "--token-delay",
                                            "must be in [0, 60], not -1")),
    (["convert", "-o", "x.tflite", "-q", "int5"],
     _bad("convert", "-q/--quantize", f"unknown quantization 'int5'; choose one of: {MODES}")),
    (["bench", "--build-standard", "d", "--modes", "none,int3"],
     _bad("bench", "--modes", f"unknown quantization 'int3'; choose one of: {MODES}")),
]


@pytest.mark.parametrize("args,line", BAD_NUMBERS, ids=[" ".join(a) for a, _ in BAD_NUMBERS])
def test_bad_numbers_are_one_line_and_exit_2(args, line):
    assert_one_line_usage_error(run_cli(*args), line)


def test_train_numbers_are_checked_too():
    proc = subprocess.run([sys.executable, "-m", "pocketlm.train", "--data", "t.txt", "--out",
                           "o", "--learning-rate", "nan"], capture_output=True, timeout=120)
    assert_one_line_usage_error(proc, "pocketlm: error: argument --learning-rate: must be a "
                                      "finite number, not 'nan' (see `python -m pocketlm.train "
                                      "--help`)")


def test_bad_flags_exit_2():
    assert_one_line_usage_error(run_cli("generate", M, "x", "--bogus"),
                                "pocketlm: error: unrecognized arguments: --bogus "
                                "(see `pocketlm --help`)")
    proc = run_cli()
    assert proc.returncode == 2 and b"COMMAND" in proc.stderr


def test_sampling_edges_are_accepted_by_the_library():
    """The range ends the CLI lets through work: a huge or tiny temperature samples."""
    import numpy as np

    from pocketlm.config import GenerationConfig
    from pocketlm.runtime.sampling import Sampler

    logits = np.array([1.0, 3.0, 2.0, -1.0])
    for t in (1e-320, 1e-300, 1e6):
        token = Sampler(GenerationConfig(temperature=t, seed=0))(logits)
        assert 0 <= token < 4
    assert Sampler(GenerationConfig(temperature=1e-300, seed=0))(logits) == 1
    for bad in ({"temperature": float("nan")}, {"temperature": float("inf")},
                {"temperature": 1e7}, {"top_p": float("nan")}, {"seed": 2**64}):
        with pytest.raises(ValueError):
            GenerationConfig(**bad)


# -- paths: checked before any slow work, one wording for every command ------------------
def test_a_directory_is_reported_the_same_by_every_command(tmp_path):
    line = f"pocketlm: error: {tmp_path} is a directory, not a .tflite file"
    for args in (["generate", str(tmp_path), "hi"], ["info", str(tmp_path)],
                 ["bench", str(tmp_path)], ["eval", str(tmp_path), "--text", __file__]):
        assert_one_line_usage_error(run_cli(*args), line)


def test_a_missing_model_is_reported_the_same_by_every_command(tmp_path):
    missing = tmp_path / "nope.tflite"
    line = f"pocketlm: error: model file not found: {missing}"
    for args in (["generate", str(missing), "hi"], ["info", str(missing)],
                 ["bench", str(missing)], ["eval", str(missing), "--text", __file__],
                 ["compare", "--text", __file__, "-o", str(tmp_path), "--extra",
                  f"x={missing}"]):
        assert_one_line_usage_error(run_cli(*args), line)


def test_arguments_are_checked_before_any_slow_work(tmp_path):
    """Each of these used to convert (or import TensorFlow) for seconds before failing."""
    (tmp_path / "file").write_text("x")
    cases = [
        (["convert", "--random", "tiny", "-o", str(tmp_path)],
         f"{tmp_path} is a directory: give a file name, e.g. {tmp_path / 'model.tflite'}"),
        (["convert", "-o", str(tmp_path / "file" / "m.tflite")],
         f"cannot write {tmp_path / 'file' / 'm.tflite'}: {tmp_path / 'file'} is not a "
         "directory"),
        (["convert", "--preset", "no_such_preset", "-o", str(tmp_path / "m.tflite")],
         UNKNOWN_PRESET),
        (["convert", "--random", "huge", "-o", str(tmp_path / "m.tflite")],
         "--random takes tiny, gpt2-small, qwen2.5-1.5b, gemma-2b or a .json file; huge is "
         "neither"),
        (["convert", "--calibration-text", str(tmp_path / "none.txt"), "-o",
          str(tmp_path / "m.tflite")], f"text file not found: {tmp_path / 'none.txt'}"),
        (["convert", "--prefill-lengths", "512", "-o", str(tmp_path / "m.tflite")],
         "a prefill length cannot exceed the sequence length"),
        (["convert", "--random", "tiny", "--sequence-length", "200", "-o",
          str(tmp_path / "m.tflite")],
         "--sequence-length 200 is more than the 128 positions of --random tiny (its "
         "max_sequence_length)"),
        (["convert", "--sequence-length", "512", "-o", str(tmp_path / "m.tflite")],
         "--sequence-length 512 is more than the 256 positions of pocketlm_gpt2_shakespeare "
         "(its max_sequence_length)"),
        (["convert", "--format", "android", "--max-length", "300", "-o",
          str(tmp_path / "m.tflite")],
         "--max-length 300 is more than the 256 positions of pocketlm_gpt2_shakespeare (its "
         "max_sequence_length)"),
        (["convert", "--preset", "gpt2_base_en", "--sequence-length", "2048", "-o",
          str(tmp_path / "m.tflite")],
         "--sequence-length 2048 is more than the 1024 positions of gpt2_base_en (its "
         "max_sequence_length)"),
        (["compare", "--text", __file__, "-o", str(tmp_path), "--window", "1024"],
         "--window 1024 is more than the 256 positions of pocketlm_gpt2_shakespeare (its "
         "max_sequence_length)"),
        (["demo", "--preset", "no_such_preset"],
         UNKNOWN_PRESET),
        (["compare", "--text", str(tmp_path / "none.txt"), "-o", str(tmp_path)],
         f"text file not found: {tmp_path / 'none.txt'}"),
        (["compare", "--text", __file__, "-o", str(tmp_path / "file")],
         f"{tmp_path / 'file'} is a file, not a directory"),
        (["compare", "--preset", str(tmp_path / "gone"), "--text", __file__, "-o",
          str(tmp_path)], f"preset directory {tmp_path / 'gone'} does not exist"),
        (["compare", "--text", __file__, "-o", str(tmp_path), "--extra", "nolabel"],
         "--extra takes LABEL=FILE, not 'nolabel'"),
        (["compare", "--text", __file__, "-o", str(tmp_path), "--report", "../up"],
         "--report takes a file name without folders, not '../up'"),
        (["bench", str(tmp_path / "file"), "--json", str(tmp_path)],
         f"{tmp_path} is a directory: give a file name, e.g. {tmp_path / 'report.json'}"),
        (["compare", "--text", str(tmp_path / "file"), "-o", str(tmp_path)],
         f"{tmp_path / 'file'} has no text to evaluate"),
        (["bench", "--build-standard", str(tmp_path / "file")],
         f"{tmp_path / 'file'} is a file, not a directory"),
        (["bench"], "give .tflite files to benchmark, or --build-standard DIR"),
        (["generate", __file__, "hi", "--tokenizer", "gtp2"],
         "--tokenizer takes gpt2, a KerasHub preset directory, VOCAB.json,MERGES.txt or a "
         "SentencePiece .spm/.model file; gtp2 is none of these"),
        (["generate", __file__, "hi", "--tokenizer", f"{__file__},{tmp_path / 'm.txt'}"],
         f"tokenizer file not found: {tmp_path / 'm.txt'}"),
        (["eval", __file__, "--text", str(tmp_path)],
         f"{tmp_path} is a directory, not a text file"),
        (["serve", "--block-words", str(tmp_path / "none.txt")],
         f"word list not found: {tmp_path / 'none.txt'}"),
    ]
    for args, message in cases:
        t0 = time.perf_counter()
        proc = run_cli(*args)
        assert_one_line_usage_error(proc, f"pocketlm: error: {message}")
        assert time.perf_counter() - t0 < 10, args  # TensorFlow alone takes longer to import


UNKNOWN_PRESET = (f"unknown preset 'no_such_preset'; try one of: "
                  f"{', '.join(available_presets())}, a KerasHub preset name (`pocketlm "
                  "families --presets` lists them), or a local KerasHub preset directory")


def test_every_option_has_help_and_the_help_lists_every_quantization():
    from pocketlm.cli import args as cli_args
    from pocketlm.cli import build_parser
    from pocketlm.config import Quantization

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    modes = [q.value for q in Quantization]
    assert set(commands.choices) == {"convert", "generate", "info", "demo", "bench", "eval",
                                     "compare", "serve", "families", "chat", "sensitivity"}
    quant_options = 0
    for name, sub in commands.choices.items():
        # argparse wraps long defaults at hyphens ("dynamic-" / "int8"): join those back.
        text = " ".join(re.sub(r"-\n\s+", "-", sub.format_help()).split())
        for action in sub._actions:
            assert action.help, f"pocketlm {name} {action.option_strings or action.dest}"
            if action.type in (cli_args.quantization, cli_args.quantizations):
                quant_options += 1
                listed = action.help.rsplit(": ", 1)[1].split(" | ")
                assert listed == modes, (name, action.option_strings)
                assert "int4" in text
            if action.option_strings and action.default not in (None, False, [],
                                                                argparse.SUPPRESS):
                default = action.default
                if isinstance(default, tuple):
                    default = ",".join(getattr(d, "value", str(d)) for d in default)
                assert f"(default: {default})" in text, (name, action.option_strings)
    assert quant_options == 4  # convert -q, demo -q, bench --modes, compare --modes


def test_train_options_have_help():
    from pocketlm.train import build_parser

    for action in build_parser()._actions:
        assert action.help, action.option_strings


@needs_convert
def test_convert_generate_info_through_the_cli(tmp_path, capsys):
    out = tmp_path / "model.tflite"
    proc = run_cli("convert", "--random", "tiny", "--quantize", "dynamic-int8",
                   "--sequence-length", "64", "--prefill-lengths", "16,4", "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert out.exists() and b"[3/4] converting" in proc.stderr
    # TensorFlow's start-up lines (absl banner, oneDNN, CUDA probing) are not shown.
    err = proc.stderr.decode()
    for noise in ("absl::InitializeLog", "cuInit", "oneDNN", "cuda drivers"):
        assert noise not in err
    assert err.splitlines()[0] == "loading the conversion stack (TensorFlow, KerasHub)..."
    assert main(["generate", str(out), "I'm enjoying a", "-n", "8"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("I'm enjoying a") and len(printed) > len("I'm enjoying a\n")
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pocketlm.kv-cache v2" in text and "quantized: dynamic-int8" in text
    assert "FULLY_CONNECTED" in text
    # Prompt on standard input, and a prompt that is not UTF-8.
    proc = run_cli("generate", str(out), "-", "-n", "4", stdin="Shall I compare".encode())
    assert proc.returncode == 0 and proc.stdout.startswith(b"Shall I compare")
    proc = run_cli("generate", str(out), "-", stdin=b"\xff\xfe bad bytes")
    assert_clean_error(proc, "the prompt is not valid UTF-8")


# -- generate: stdout holds the text only, each note is one line on stderr ---------------
@pytest.fixture(scope="module")
def tiny(tiny_models):
    return str(tiny_models["dynamic-int8"])


@pytest.mark.parametrize("prompt,window,shown", [
    ("Fine weather 🌍🌍 today", 3, " today"),  # the sample
    ("Fine weather 🌍🌍 today", 4, "🌍 today"),
    ("雨の日も 🌧️ 晴れの日も", 2, "も"),
    ("🤖🤖🤖", 5, "🤖"),
])
def test_a_token_window_starts_on_a_whole_character(tiny, prompt, window, shown):
    from pocketlm.tokenizer import BPETokenizer

    kept = len(BPETokenizer.gpt2().encode(shown))
    proc = run_cli("generate", tiny, prompt, "--context-window", str(window), "-n", "3", "-t",
                   "0", "--trust")
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert text.startswith(shown) and "\ufffd" not in text
    assert proc.stderr.decode() == (f"note: --context-window {window} cut the prompt to its "
                                    f"last {kept} token{'' if kept == 1 else 's'}\n")


def test_notes_for_a_cut_prompt_and_a_full_window(tiny):
    proc = run_cli("generate", tiny, "one two three four five", "--context-window", "2",
                   "--context-unit", "words", "-n", "2", "--trust")
    assert proc.returncode == 0 and proc.stdout.decode().startswith("four five")
    assert proc.stderr.decode() == ("note: --context-window 2 cut the prompt to its last 2 "
                                    "words (2 tokens)\n")
    # The model's window is 64 tokens: -n 1000 stops there, and says so. (64 rows: the start
    # token and 2 prompt tokens, then 62 new tokens, the last of which needs no row.)
    proc = run_cli("generate", tiny, "hello there", "-n", "1000", "--trust")
    assert proc.returncode == 0 and proc.stdout.decode().startswith("hello there")
    assert proc.stderr.decode() == ("note: stopped after 62 of 1000 new tokens: the model's "
                                    "window (64 tokens) is full\n")
    proc = run_cli("generate", tiny, "word " * 100, "-n", "10", "--trust")
    assert proc.returncode == 0
    # 64 rows, 10 kept for the completion and 1 for the start token: 53 prompt tokens.
    assert proc.stderr.decode() == ("note: the prompt was cut to its last 53 tokens to fit "
                                    "the model's window\n")
    assert proc.stdout.decode().startswith(" word word") and len(proc.stdout) < 400


def test_an_interruption_ends_the_text_line_first(tiny, capsys, monkeypatch):
    import pocketlm.runtime

    real_stream = pocketlm.runtime.stream

    class Interrupted:
        """A completion whose iteration is interrupted after its first piece."""

        def __init__(self, done):
            self.done = done

        def __getattr__(self, name):
            return getattr(self.done, name)

        def __iter__(self):
            pieces = iter(self.done)
            yield next(pieces)
            raise KeyboardInterrupt

    def interrupted(*args, **kwargs):
        return Interrupted(real_stream(*args, **kwargs))

    monkeypatch.setattr(pocketlm.runtime, "stream", interrupted)
    assert main(["generate", tiny, "I'm enjoying a", "-n", "5", "--trust"]) == 130
    out, err = capsys.readouterr()
    assert out.startswith("I'm enjoying a") and out.endswith("\n") and out.count("\n") == 1
    assert err == "pocketlm: interrupted\n"


def test_eval_of_a_text_too_short_is_one_line(tiny, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_one_line_usage_error(run_cli("eval", tiny, "--text", str(empty)),
                                f"pocketlm: error: {empty} holds 0 tokens: perplexity needs "
                                "at least 2")
    short = tmp_path / "short.txt"
    short.write_text("Once upon a time")
    assert_one_line_usage_error(run_cli("eval", tiny, "--text", str(short), "--holdout", "0.1"),
                                f"pocketlm: error: {short} holds 1 token in its held-out "
                                "part: perplexity needs at least 2")


def test_eval_progress_on_a_pipe_is_a_few_lines(tiny, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("All the world's a stage, and all the men and women merely players. " * 120)
    proc = run_cli("eval", tiny, "--text", str(text), "--window", "16", "--stride", "4")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = proc.stderr.decode().splitlines()
    assert lines[0].endswith("window 16, stride 4")
    windows = int(lines[-1].split("/")[1].split()[0])
    assert windows > 100  # hundreds of updates...
    assert [line.split("(")[1] for line in lines[1:]] == ["25%)", "50%)", "75%)", "100%)"]
    assert all(line.startswith("scoring: ") for line in lines[1:])
    assert "\r" not in proc.stderr.decode()


def test_the_tensorflow_log_filter_keeps_real_errors():
    from pocketlm.quiet import _NOISE

    noise = ["WARNING: All log messages before absl::InitializeLog() is called are written to "
             "STDERR",
             "I0000 00:00:1796008744.633846    7297 port.cc:153] oneDNN custom operations are on.",
             "W0000 00:00:1796008744.634848    7297 cudart_stub.cc:31] Could not find cuda "
             "drivers on your machine, GPU will not be used.",
             "E0000 00:00:1796008748.237098    7297 cuda_platform.cc:52] failed call to cuInit: "
             "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"]
    kept = ["E0000 00:00:1796008748.237098    7297 op_kernel.cc:1830] OP_REQUIRES failed at "
            "conv_ops.cc:1068 : RESOURCE_EXHAUSTED: OOM",
            "Traceback (most recent call last):", "pocketlm: error: something",
            "[1/4] building the KV-cache graph"]
    assert all(_NOISE.match(line) for line in noise)
    assert not any(_NOISE.match(line) for line in kept)


def test_progress_is_a_few_lines_on_a_pipe_and_a_bar_with_time_left_on_a_terminal():
    import io

    from pocketlm.progress import Progress

    pipe = io.StringIO()
    tick = Progress("scoring", unit="windows", stream=pipe, terminal=False)
    for done in range(1, 365):
        tick(done, 364)
    tick.close()
    assert pipe.getvalue().splitlines() == [
        "scoring: 91/364 windows (25%)", "scoring: 182/364 windows (50%)",
        "scoring: 273/364 windows (75%)", "scoring: 364/364 windows (100%)"]
    tty = io.StringIO()
    bar = Progress("scoring", unit="windows", stream=tty, terminal=True)
    for done in range(1, 5):
        bar(done, 4)
    text = tty.getvalue()
    assert "scoring: 100%" in text and "4/4" in text and "<00:00" in text  # elapsed<left
