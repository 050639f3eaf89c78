"""The hand-written Llama-style graph (pocketlm.graph_decoder) against KerasHub, unconverted.

test_families.py holds every switched family's converted file to KerasHub at its tiny
config. Here the graph's own tf.functions are held to KerasHub's full forward pass on
variants of those configs (RoPE bases and scalings, head sizes, MQA, no GQA, windows, tied
and untied heads), with EVERY weight given its own random noise: KerasHub initializes norm
scales to ones or zeros, and its seeded initializers give a layer's key and value kernels
(and query and output kernels of one size) the same values, which would hide a norm read
from the wrong weight or K swapped with V. And a model run part by part (Part(0, 1) then
Part(1, 2), chained through hidden_states) equals the whole.
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import needs_convert

pytestmark = needs_convert

SEQ = 32
CHUNK = 8

VARIANTS = {
    "llama-rope-base-and-ignored-position-scaling": (
        "llama", {"rope_max_wavelength": 500000, "rope_position_scaling_factor": 4.0}),
    "llama-no-gqa": ("llama", {"num_key_value_heads": 4}),
    "llama-tied-head": ("llama", {"tie_word_embeddings": True}),
    "llama3-scaled-frequencies": ("llama3", {}),
    "mistral-linear-rope-scaling-head-dim-16-window-5": (
        "mistral", {"rope_scaling_factor": 2.0, "head_dim": 16, "sliding_window": 5}),
    "mistral-no-window": ("mistral", {"sliding_window": None}),
    "qwen-untied-window-6-rope-1e6": (
        "qwen", {"tie_word_embeddings": False, "use_sliding_window_attention": True,
                 "sliding_window_size": 6, "rope_max_wavelength": 1000000}),
    "qwen3-head-dim-16-window-7": ("qwen3", {"head_dim": 16, "sliding_window_size": 7}),
    "gemma-mqa-head-dim-16": ("gemma", {"num_key_value_heads": 1, "head_dim": 16}),
    "gemma-query-normalized-by-hidden": ("gemma", {"query_head_dim_normalize": False}),
    "gemma2-caps-post-norms-windows": ("gemma2", {}),
    "gemma2-window-3-one-kv-head": ("gemma2", {"sliding_window_size": 3,
                                               "num_key_value_heads": 1}),
}


def _model(family: str, overrides: dict, seed: int = 0):
    """A tiny random model of ``family`` with ``overrides``, every weight randomized."""
    from pocketlm.authoring import random_causal_lm
    from pocketlm.families import get_family
    from pocketlm.tiny import tiny_keras_tokenizer

    fam = get_family(family)
    tok = tiny_keras_tokenizer(fam)
    config = {"family": fam.name, **fam.tiny, **overrides,
              "vocabulary_size": int(tok.vocabulary_size())}
    authored = random_causal_lm(config, sequence_length=SEQ, seed=seed, keras_tokenizer=tok)
    rng = np.random.default_rng(seed)
    for w in authored.backbone.weights:
        value = w.numpy()
        w.assign(value + rng.normal(0.0, 0.2, value.shape).astype(value.dtype))
    return authored


def _graph(authored, part=None, rope_table: bool = False):
    from pocketlm.graph import backbone_weights
    from pocketlm.graph_decoder import DecoderGraph

    return DecoderGraph(backbone_weights(authored.backbone), authored.backbone_config,
                        authored.family, SEQ, rope_table=rope_table, part=part)


def _keras_logits(authored, ids: np.ndarray) -> np.ndarray:
    x = ids[None].astype(np.int32)
    return np.asarray(authored.causal_lm({"token_ids": x,
                                          "padding_mask": np.ones_like(x, bool)}))[0]


def _run(fn, first, pos: int, caches: list[np.ndarray], names: list[str]):
    import tensorflow as tf

    n = first.shape[1] if first.dtype == np.int32 else first.shape[0]
    out = fn(tf.constant(first), tf.constant(np.arange(pos, pos + n, dtype=np.int32)),
             *[tf.constant(c) for c in caches])
    return {k: v.numpy() for k, v in out.items()}, [out[k].numpy() for k in names]


@pytest.mark.parametrize("rope_table", [False, True], ids=["rope-computed", "rope-table"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_graph_matches_keras_full_pass(name, rope_table):
    """Chunks of 8, the third with 5 rows of padding (other tokens) after its 3 real ones,
    then decode from there to the cache end (over the padded rows, past the windows)."""
    family, overrides = VARIANTS[name]
    authored = _model(family, overrides)
    graph = _graph(authored, rope_table=rope_table)
    vocab = int(authored.backbone_config["vocabulary_size"])
    rng = np.random.default_rng(1)
    ids = rng.integers(0, vocab, SEQ).astype(np.int32)
    ref = _keras_logits(authored, ids)
    score, decode = graph.score_function(CHUNK), graph.step_function(1, logits=True)
    names, caches = graph.cache_names(), graph.empty_caches()
    worst = 0.0
    for start, real in ((0, CHUNK), (CHUNK, CHUNK), (2 * CHUNK, 3)):
        chunk = np.concatenate([ids[start:start + real],
                                rng.integers(0, vocab, CHUNK - real).astype(np.int32)])
        out, caches = _run(score, chunk[None], start, caches, names)
        worst = max(worst, float(np.abs(out["logits"][0, :real]
                                        - ref[start:start + real]).max()))
    for pos in range(2 * CHUNK + 3, SEQ):
        out, caches = _run(decode, ids[None, pos:pos + 1], pos, caches, names)
        worst = max(worst, float(np.abs(out["logits"][0, 0] - ref[pos]).max()))
    assert worst < 1e-4, f"{name}: max |logit difference| {worst:.2e}"
    assert graph.cache_shape == (1, graph.spec.num_kv_heads, SEQ, graph.spec.head_dim)


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_parts_chained_equal_the_whole_graph(family):
    from pocketlm.contract import HIDDEN, LOGITS
    from pocketlm.graph_base import Part

    authored = _model(family, {})
    whole = _graph(authored)
    first, second = _graph(authored, Part(0, 1, 2)), _graph(authored, Part(1, 2, 2))
    # Each part holds its own layer only, the embedding or the head only where it has them.
    assert (len(first.layers), len(second.layers)) == (1, 1)
    assert not hasattr(first, "final_norm") and not hasattr(first, "head_kernel")
    assert second.tied or not hasattr(second, "embeddings")
    assert first.cache_names() == ["k_cache_0", "v_cache_0"]
    assert second.cache_names() == ["k_cache_1", "v_cache_1"]
    size = lambda g: sum(int(np.prod(v.shape)) for v in g.variables)  # noqa: E731
    # Only RoPE's frequencies (and a tied embedding, also the head) are in both parts.
    shared = int(np.prod(whole.inverse_frequencies.shape)) + (
        int(np.prod(whole.embeddings.shape)) if whole.tied else 0)
    assert size(first) + size(second) - shared == size(whole)

    vocab = int(authored.backbone_config["vocabulary_size"])
    ids = np.random.default_rng(2).integers(0, vocab, 12).astype(np.int32)
    fns = {"whole": (whole.score_function(CHUNK), whole.step_function(1, True)),
           "first": (first.step_function(CHUNK, False), first.step_function(1, False)),
           "second": (second.score_function(CHUNK), second.step_function(1, True))}
    caches = {k: g.empty_caches() for k, g in
              (("whole", whole), ("first", first), ("second", second))}
    for i, (pos, chunk) in enumerate(((0, ids[None, :CHUNK]), (CHUNK, ids[None, CHUNK:9]),
                                      (9, ids[None, 9:10]))):
        kind = 0 if i == 0 else 1
        ref, caches["whole"] = _run(fns["whole"][kind], chunk, pos, caches["whole"],
                                    whole.cache_names())
        mid, caches["first"] = _run(fns["first"][kind], chunk, pos, caches["first"],
                                    first.cache_names())
        assert mid[HIDDEN].shape == (chunk.shape[1], whole.hidden_dim)
        out, caches["second"] = _run(fns["second"][kind], mid[HIDDEN], pos, caches["second"],
                                     second.cache_names())
        np.testing.assert_allclose(out[LOGITS], ref[LOGITS], atol=1e-5, rtol=0)
        np.testing.assert_allclose(caches["first"] + caches["second"], caches["whole"],
                                   atol=1e-5, rtol=0)


def test_the_runtime_reads_grouped_query_caches_and_refuses_metadata_that_contradicts_them(
        tmp_path):
    """A heads-first cache of kv_heads < heads loads; metadata claiming other KV heads or
    another head size than the file's caches is refused in one line."""
    import json

    from pocketlm.config import ExportConfig
    from pocketlm.contract import METADATA_KEY
    from pocketlm.errors import ContractError
    from pocketlm.export import export
    from pocketlm.flatbuf import finalize, read_bytes, read_metadata
    from pocketlm.runtime import load_model
    from pocketlm.tiny import tiny_causal_lm

    authored = tiny_causal_lm("qwen3", sequence_length=SEQ)  # 4 query heads, 2 KV heads of 8
    path = export(authored, tmp_path / "q.tflite",
                  ExportConfig(sequence_length=SEQ, prefill_lengths=(CHUNK,), quantization="none"),
                  progress=lambda _m: None).path
    model = load_model(path, num_threads=1)
    assert (model.info.cache_layout, model.info.cache_shape) == ("heads-first", [1, 2, SEQ, 8])
    data = read_bytes(path)
    info = json.loads(read_metadata(data)[METADATA_KEY])
    for key, value in (("num_key_value_heads", 4), ("head_dim", 16)):
        bad = tmp_path / f"bad-{key}.tflite"
        edited = {**info, "model": {**info["model"], key: value}}
        bad.write_bytes(finalize(data, {METADATA_KEY: json.dumps(edited).encode()}))
        with pytest.raises(ContractError, match=f"contradicts itself \\({key} {value}"):
            load_model(bad, num_threads=1)
