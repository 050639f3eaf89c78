"""The second embedded model: a small Llama with a SentencePiece tokenizer trained here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pocketlm.presets import available_presets, embedded_preset_dir

from .conftest import SHARED_DATA, needs_convert

NAME = "pocketlm_llama_shakespeare"
VERSE = ("ROMEO:\nBut, soft! what light through yonder window breaks?\n"
         "It is the east, and Juliet is the sun.\n\n"
         "JULIET:\n  O Romeo,  Romeo! wherefore art thou Romeo?\t\n\n\n")


def test_the_llama_preset_ships_with_the_package_within_30_mb():
    assert NAME in available_presets()
    folder = embedded_preset_dir(NAME)
    files = [f for f in folder.rglob("*") if f.is_file()]
    assert {"config.json", "model.weights.h5", "tokenizer.json", "preprocessor.json", "task.json",
            "README.md", "training.json", "vocabulary.spm"} <= {f.name for f in files}
    assert sum(f.stat().st_size for f in files) <= 30_000_000


def test_the_package_data_globs_cover_every_preset_file():
    import fnmatch
    import tomllib

    from .conftest import REPO

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["pocketlm"]
    pkg = REPO / "src" / "pocketlm"
    for f in embedded_preset_dir(NAME).rglob("*"):
        if f.is_file():
            rel = f.relative_to(pkg).as_posix()
            # setuptools globs: "*" does not cross "/", as fnmatch on each part.
            assert any(len(g.split("/")) == len(rel.split("/")) and all(
                fnmatch.fnmatchcase(p, q) for p, q in zip(rel.split("/"), g.split("/")))
                for g in globs), rel


@pytest.fixture(scope="module")
def llama():
    import keras_hub

    return keras_hub.models.LlamaCausalLM.from_preset(str(embedded_preset_dir(NAME)))


@needs_convert
def test_the_preset_is_a_llama_with_gqa_rmsnorm_and_untied_embeddings(llama):
    from keras_hub.src.models.llama.llama_layernorm import LlamaLayerNorm

    cfg = llama.backbone.get_config()
    assert type(llama.backbone).__name__ == "LlamaBackbone"
    assert cfg["num_query_heads"] > cfg["num_key_value_heads"] >= 1  # grouped-query attention
    assert cfg["num_query_heads"] % cfg["num_key_value_heads"] == 0
    assert cfg["vocabulary_size"] == llama.preprocessor.tokenizer.vocabulary_size()
    assert not llama.backbone.token_embedding.tie_weights
    assert isinstance(llama.backbone.get_layer("sequence_output_layernorm"), LlamaLayerNorm)
    layer = llama.backbone.get_layer("transformer_layer_0")
    assert layer._feedforward_gate_dense.units == cfg["intermediate_dim"]  # SwiGLU: a gate
    card = json.loads((embedded_preset_dir(NAME) / "training.json").read_text())
    assert llama.backbone.count_params() == card["parameters"]


@needs_convert
@pytest.mark.parametrize("text", [VERSE, "", "\n", " x  y ", "Thou art — «ǂ» 你好 🙂\r\n",
                                  "KING RICHARD III:\nNow is the winter of our discontent"])
def test_the_tokenizer_round_trips_text_exactly(llama, text):
    tok = llama.preprocessor.tokenizer
    ids = tok(text)
    assert tok.detokenize(ids) == text


@needs_convert
def test_newline_is_one_piece_and_the_special_ids_are_what_keras_hub_expects(llama):
    tok = llama.preprocessor.tokenizer
    assert np.asarray(tok("\n")).tolist() == [tok.token_to_id("\n")]
    assert (tok.token_to_id("<pad>"), tok.start_token_id, tok.end_token_id) == (0, 1, 2)
    assert tok.pad_token_id == tok.token_to_id("<pad>")


@needs_convert
@pytest.mark.skipif(not (SHARED_DATA / "tinyshakespeare.txt").is_file(),
                    reason="needs ../shared/data/tinyshakespeare.txt (not in a fresh clone)")
def test_held_out_perplexity_is_what_the_model_card_says(llama):
    """The held-out loss, recomputed with the shipped tokenizer on the first windows of the
    held-out text, as training measured it (``<s>`` + 255 tokens per window)."""
    from pocketlm.textdata import read_text, split_holdout
    from pocketlm.train import _val_batches

    card = json.loads((embedded_preset_dir(NAME) / "training.json").read_text())
    cfg = card["config"]
    _, held_out = split_holdout(read_text(SHARED_DATA / "tinyshakespeare.txt"),
                                cfg["holdout_fraction"])
    ids = np.asarray(llama.preprocessor.tokenizer(held_out), dtype=np.int32)
    assert len(ids) == card["val_tokens"]  # the shipped tokenizer is the one trained with
    val = _val_batches(ids, cfg["max_sequence_length"], llama.preprocessor.tokenizer.start_token_id)
    nll = []
    for batch in np.array_split(val, math.ceil(len(val) / 16)):  # ~16 x 256 x 4096 logits a time
        x, y = batch[:, :-1], batch[:, 1:]
        logits = np.asarray(llama({"token_ids": x, "padding_mask": np.ones_like(x, bool)}),
                            dtype=np.float64)
        logits -= logits.max(-1, keepdims=True)
        nll.append(np.log(np.exp(logits).sum(-1))
                   - np.take_along_axis(logits, y[..., None], -1)[..., 0])
    nll = np.concatenate(nll)
    assert math.isclose(nll.mean(), card["best_val_loss"], rel_tol=2e-3)
    assert math.isclose(math.exp(nll.mean()), card["best_val_perplexity"], rel_tol=2e-3)
    readme = (embedded_preset_dir(NAME) / "README.md").read_text()
    assert f"perplexity {card['best_val_perplexity']:.1f}" in readme
