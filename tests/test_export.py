"""Export: every quantization mode converts, loads and generates; float32 matches Keras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pocketlm.config import GenerationConfig
from pocketlm.contract import METADATA_KEY, TOKENIZER_METADATA_KEY
from pocketlm.flatbuf import summarize
from pocketlm.runtime import complete, load_model

from .conftest import MODES, TINY_SEQ, needs_convert

pytestmark = needs_convert
PROMPT = "I'm enjoying a"


def keras_logits(authored, ids: list[int]) -> np.ndarray:
    x = np.asarray([ids], np.int32)
    out = authored.causal_lm({"token_ids": x, "padding_mask": np.ones_like(x, bool)})
    return np.asarray(out)[0]


def keras_greedy(authored, ids: list[int], n: int) -> list[int]:
    """KerasHub's own generate() with the greedy sampler, end token ignored."""
    import keras_hub

    lm = authored.causal_lm
    saved = lm.preprocessor
    lm.preprocessor = None
    try:
        lm.compile(sampler=keras_hub.samplers.GreedySampler())
        length = len(ids) + n
        x = np.zeros((1, length), np.int32)
        x[0, :len(ids)] = ids
        mask = np.zeros((1, length), bool)
        mask[0, :len(ids)] = True
        out = lm.generate({"token_ids": x, "padding_mask": mask}, stop_token_ids=None)
        return [int(t) for t in np.asarray(out["token_ids"])[0, len(ids):length]]
    finally:
        lm.preprocessor = saved


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_converts_loads_and_generates(tiny_models, mode):
    path = tiny_models[mode]
    s = summarize(path)
    assert set(s.signatures) == {"decode", "prefill", "prefill_4", "score"}
    # Builtin ops only: no Select-TF (Flex) and no custom ops.
    assert not [op for op in s.op_histogram if op.startswith("CUSTOM") or "FLEX" in op]
    info = json.loads(s.metadata[METADATA_KEY])
    assert info["quantization"] == mode and info["contract_version"] == 2
    assert info["end_token_id"] == 50256 and TOKENIZER_METADATA_KEY in s.metadata
    model = load_model(path)
    done = complete(model, PROMPT, GenerationConfig(max_new_tokens=12))
    assert len(done.token_ids) == 12 and done.stop_reason == "max_new_tokens"


def test_quantized_weights_are_smaller(tiny_models):
    # Weight bytes, not file size: in a model this tiny, per-channel scales (one per vocabulary
    # entry, per signature) weigh as much as the weights themselves.
    weights = {m: sum(summarize(p).weight_bytes_by_type.values()) for m, p in tiny_models.items()}
    assert weights["dynamic-int8"] < 0.55 * weights["none"]
    assert weights["float16"] < 0.55 * weights["none"]
    assert weights["int4"] < 0.45 * weights["none"]
    for mode in ("dynamic-int8", "full-int8", "int4"):  # no big float weight is left
        floats = summarize(tiny_models[mode]).weight_bytes_by_type.get("float32", 0)
        assert floats < 0.05 * weights["none"]  # (int4 keeps one float scale per row)
    # Known cost, reported rather than hidden: full-int8 requantizes the embedding table for
    # each signature's GATHER (its output scale comes from that signature's calibration), so
    # a model whose weights are mostly embedding, like this one, gets no smaller.
    assert weights["full-int8"] < 1.5 * weights["none"]


def test_float32_greedy_equals_keras_generate(tiny_authored, tiny_models):
    model = load_model(tiny_models["none"])
    # As KerasHub's generate_preprocess packs it: GPT-2's start token, then the prompt.
    ids = [50256] + model.tokenizer.encode(PROMPT)
    assert model.start_token_id == 50256
    ours = complete(model, PROMPT, GenerationConfig(max_new_tokens=40,
                                                    stop_at_end_token=False)).token_ids
    assert ours == keras_greedy(tiny_authored, ids, 40)


@pytest.mark.parametrize("length", [1, 3, 4, 5, 16, 17, 40, TINY_SEQ])
def test_float32_prefill_logits_match_keras_at_any_prompt_length(tiny_authored, tiny_models,
                                                                length):
    model = load_model(tiny_models["none"])
    ids = [(i * 7919) % 50000 for i in range(length)]
    ours = model.start(ids)
    np.testing.assert_allclose(ours, keras_logits(tiny_authored, ids)[-1], atol=1e-4, rtol=0)


def test_float32_decode_and_score_logits_match_keras(tiny_authored, tiny_models):
    model = load_model(tiny_models["none"])
    ids = model.tokenizer.encode("To be, or not to be, that is the question: whether 'tis "
                                 "nobler in the mind to suffer the slings and arrows")
    ref = keras_logits(tiny_authored, ids)
    np.testing.assert_allclose(model.score(ids), ref, atol=1e-4, rtol=0)
    model.start(ids[:5])
    stepped = [model.step(t) for t in ids[5:]]
    np.testing.assert_allclose(np.stack(stepped[:-1]), ref[5:-1], atol=1e-4, rtol=0)


def test_teacher_forced_agreement_per_mode(tiny_authored, tiny_models, record_property):
    """Top-1 agreement with the Keras float model, token by token (reported, and bounded)."""
    tok = load_model(tiny_models["none"]).tokenizer
    ids = tok.encode("Shall I compare thee to a summer's day? Thou art more lovely and more "
                     "temperate: rough winds do shake the darling buds of May, and summer's "
                     "lease hath all too short a date.")[:TINY_SEQ]
    ref = keras_logits(tiny_authored, ids)
    agreement = {}
    for mode, path in tiny_models.items():
        logits = load_model(path).score(ids)
        agreement[mode] = float(np.mean(logits.argmax(-1) == ref.argmax(-1)))
        record_property(f"top1_agreement_{mode}", agreement[mode])
    print("teacher-forced top-1 agreement vs Keras float32:", agreement)
    assert agreement["none"] == 1.0
    assert agreement["float16"] >= 0.95
    assert agreement["dynamic-int8"] >= 0.8
    assert agreement["full-int8"] >= 0.3
    assert agreement["int4"] >= 0.3
