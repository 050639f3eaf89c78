"""Quality measures: sliding-window perplexity, agreement, KL, and the compare table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pocketlm.quality import evaluate, greedy_match, windows

from .conftest import TINY_SEQ, needs_convert


@pytest.mark.parametrize("n,window,stride", [(10, 4, 2), (10, 4, 4), (257, 64, 32), (5, 8, 4)])
def test_every_token_after_the_first_window_start_is_scored_once(n, window, stride):
    targets = []
    for begin, end, first in windows(n, window, stride):
        assert end - begin <= window and begin <= first < end
        targets += list(range(first + 1, end))
    assert targets == sorted(set(targets))  # once each, in order
    # Only tokens that start a window with no context before them are never targets.
    assert set(range(1, n)) - set(targets) <= {b for b, _, _ in windows(n, window, stride)}


def test_uniform_model_has_perplexity_equal_to_the_vocabulary():
    vocab = 50
    uniform = lambda ids: np.zeros((len(ids), vocab))  # noqa: E731
    ids = list(np.random.default_rng(0).integers(0, vocab, 300))
    r = evaluate(ids, {"u": uniform}, window=32, stride=16).results()["u"]
    assert math.isclose(r["perplexity"], vocab, rel_tol=1e-9)


def test_agreement_and_kl_against_a_reference():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(20, 20))
    ref = lambda ids: table[ids]  # noqa: E731
    same = lambda ids: table[ids].copy()  # noqa: E731
    flipped = lambda ids: -table[ids]  # noqa: E731
    ids = list(rng.integers(0, 20, 200))
    r = evaluate(ids, {"ref": ref, "same": same, "flipped": flipped}, 16, 8, "ref").results()
    assert r["same"]["top1_agreement"] == 1.0 and abs(r["same"]["mean_kl"]) < 1e-12
    assert r["flipped"]["top1_agreement"] == 0.0 and r["flipped"]["mean_kl"] > 1.0
    assert r["ref"]["top1_agreement"] is None


def test_greedy_match_counts_until_the_first_difference():
    assert greedy_match([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert greedy_match([1, 2], [1, 2]) == 2


@needs_convert
@pytest.mark.slow
def test_compare_writes_a_decision_table(tiny_authored, tmp_path):
    from pocketlm.compare import CompareConfig, run_compare
    from pocketlm.textdata import SAMPLE_TEXT

    preset = tmp_path / "tiny_preset"
    tiny_authored.causal_lm.save_to_preset(str(preset))
    text = tmp_path / "text.txt"
    text.write_text(SAMPLE_TEXT * 3)
    cfg = CompareConfig(preset=str(preset), text=str(text), out_dir=str(tmp_path / "out"),
                        modes=("none", "dynamic-int8"), holdout=0.5, window=TINY_SEQ,
                        stride=32, greedy_prompts=2, greedy_tokens=8, bench_runs=1)
    report = run_compare(cfg, progress=lambda m: None)
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows) == {"keras-float32", "none", "dynamic-int8"}
    # The float32 file is the Keras model: same perplexity, full agreement, no divergence.
    assert math.isclose(rows["none"]["perplexity"], rows["keras-float32"]["perplexity"],
                        rel_tol=1e-4)
    assert rows["none"]["top1_agreement"] == 1.0 and rows["none"]["greedy_match"] == 8
    assert rows["dynamic-int8"]["file_mib"] < rows["none"]["file_mib"]
    assert rows["dynamic-int8"]["decode_tok_s"] > 0
    out = tmp_path / "out"
    assert json.loads((out / "compare.json").read_text())["rows"]
    assert "| keras-float32 |" in (out / "compare.md").read_text()
    assert (out / "compare.png").stat().st_size > 10_000
