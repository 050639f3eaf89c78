"""Training from scratch (pocketlm.train): window layout, the SentencePiece tokenizer, a tiny run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pocketlm.textdata import SAMPLE_TEXT
from pocketlm.train import _val_batches, _windows

from .conftest import needs_convert


@pytest.mark.parametrize("bos", [None, 1])
def test_windows_are_next_token_pairs_and_start_with_bos_when_asked(bos):
    tokens = np.arange(100, 400, dtype=np.int32)  # token value = position + 100
    rng = np.random.default_rng(0)
    for batch in (_windows(tokens, 8, 50, rng, bos), _val_batches(tokens, 8, bos)):
        assert batch.shape[1] == 9 and batch.dtype == np.int32
        x, y = batch[:, :-1], batch[:, 1:]
        if bos is None:
            assert (y == x + 1).all()
        else:  # <s> + 8 text tokens: the model learns to start from <s> as generate feeds it
            assert (x[:, 0] == bos).all() and (y[:, 1:] == x[:, 1:] + 1).all()
    val = _val_batches(tokens, 8, bos)
    text_part = val[:, 1:] if bos is not None else val[:, :-1]
    assert (np.diff(text_part[:, 0]) == 8).all()  # consecutive, non-overlapping


def test_sentencepiece_training_is_deterministic_and_round_trips_exactly():
    sentencepiece = pytest.importorskip("sentencepiece")
    from pocketlm.train_llama import BOS_ID, EOS_ID, PAD_ID, UNK_ID, train_sentencepiece

    text = SAMPLE_TEXT * 3
    proto = train_sentencepiece(text, 320)
    assert proto == train_sentencepiece(text, 320)
    sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
    assert [sp.id_to_piece(i) for i in (PAD_ID, BOS_ID, EOS_ID, UNK_ID)] == [
        "<pad>", "<s>", "</s>", "<unk>"]
    for s in [text, "\n\n  two  spaces\tand a tab\n", "unseen: Zß—🙂\r\n", ""]:
        assert sp.decode(sp.encode(s)) == s
    assert sp.encode("\n") == [sp.piece_to_id("\n")]


@needs_convert
def test_a_tiny_llama_trains_saves_a_preset_that_reloads_and_writes_its_card(tmp_path):
    import keras_hub

    data = tmp_path / "text.txt"
    data.write_text(SAMPLE_TEXT * 4)
    out = tmp_path / "preset"
    cmd = [sys.executable, "-m", "pocketlm.train", "--family", "llama", "--data", str(data),
           "--out", str(out), "--num-layers", "1", "--num-heads", "4", "--num-key-value-heads",
           "2", "--hidden-dim", "32", "--intermediate-dim", "64", "--vocabulary-size", "320",
           "--max-sequence-length", "32", "--batch-size", "4", "--max-steps", "4",
           "--eval-every", "2", "--warmup-steps", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((out / "training.json").read_text())
    assert [h["step"] for h in report["history"]] == [2, 4] and report["steps_run"] == 4
    assert set(report["greedy_samples"]) == set(report["sampled_samples"])
    lm = keras_hub.models.LlamaCausalLM.from_preset(str(out))
    assert lm.backbone.count_params() == report["parameters"]
    assert lm.backbone.num_key_value_heads == 2 and lm.backbone.num_query_heads == 4
    card = (out / "README.md").read_text()
    assert f"perplexity {report['best_val_perplexity']:.1f}" in card
    assert "--family llama" in card and "--vocabulary-size 320" in card


def test_a_missing_data_file_is_one_line_not_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pocketlm.train", "--family", "llama",
                          "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "text file not found" in run.stderr and "Traceback" not in run.stderr
